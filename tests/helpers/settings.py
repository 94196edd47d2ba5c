"""The type of the `make_settings` fixture: settings on the test database, with overrides."""

from collections.abc import Callable

from rendio.config import Settings

SettingsFactory = Callable[..., Settings]

# Tests that are not about rate limits must not run into them (one test onboards dozens of
# devices from one address, or asks one user for hundreds of videos); the rate-limit tests set
# their own.
GENEROUS_LIMITS: dict[str, str] = {
    name: "1000000/minute" for name in Settings.model_fields if name.startswith("rate_limit_")
}
