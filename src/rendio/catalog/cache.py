"""The get-models answer kept as ready bytes and ETag, dropped whenever the catalog changes.

Every change to `models` (an admin call, `rendio models import`, an operator's SQL, on any
host) sends a notice on `rendio_catalog` (migration 0013) that every API process hears through
its listener, so no replica serves a price that is no longer charged (there is no TTL to wait
out). What a process cannot hear it must not trust: the answer is kept only while the listener
is connected, and an answer read from the database is kept only if no change was heard while
it was being read (the generation check), so a read racing a change can never outlive it.
As a last guard (a listener behind a pooler that swallows notices), an answer is kept at most
MAX_AGE_SECONDS, the `max-age` clients already cache it for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

CHANNEL = "rendio_catalog"
MAX_AGE_SECONDS = 60.0


@dataclass(frozen=True)
class CatalogAnswer:
    body: bytes
    etag: str


class CatalogCache:
    def __init__(self) -> None:
        self._generation = 0
        self._answer: CatalogAnswer | None = None
        self._kept_at = 0.0
        self._live = False

    @property
    def answer(self) -> CatalogAnswer | None:
        if self._answer is not None and time.monotonic() - self._kept_at > MAX_AGE_SECONDS:
            self._answer = None
        return self._answer

    @property
    def generation(self) -> int:
        """Take it before reading the catalog; hand it back to `keep`."""
        return self._generation

    def keep(self, generation: int, answer: CatalogAnswer) -> None:
        if self._live and generation == self._generation:
            self._answer = answer
            self._kept_at = time.monotonic()

    def changed(self, _notice: str = "") -> None:
        """The catalog changed (a notice, or a write made by this process)."""
        self._generation += 1
        self._answer = None

    def listening(self, connected: bool) -> None:
        """Notices may have been missed while the listener was down: start afresh either way."""
        self._live = connected
        self.changed()
