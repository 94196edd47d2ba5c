"""The type of the `make_settings` fixture: settings on the test database, with overrides."""

from collections.abc import Callable

from rendio.config import Settings

SettingsFactory = Callable[..., Settings]
