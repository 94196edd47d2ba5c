"""What `/ready` reports beyond the database: the state of long-running parts of the process
(the in-process worker), each reported by whoever supervises it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Health:
    """Named components and, for each, why it is down (None: up). Single event loop: no lock."""

    _down: dict[str, str | None] = field(default_factory=dict)

    def up(self, component: str) -> None:
        self._down[component] = None

    def down(self, component: str, reason: str) -> None:
        self._down[component] = reason

    def problems(self) -> dict[str, str]:
        return {name: reason for name, reason in self._down.items() if reason is not None}
