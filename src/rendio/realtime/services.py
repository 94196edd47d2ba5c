"""What realtime is handed at run time: its slice of the one services object."""

from __future__ import annotations

from dataclasses import dataclass

from rendio.generation.services import GenerationServices
from rendio.realtime.hub import ChangeHub


@dataclass(frozen=True)
class RealtimeServices(GenerationServices):
    # Row changes routed to the sockets that may see them.
    changes: ChangeHub
