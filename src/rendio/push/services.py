"""What push is handed at run time: its slice of the one services object."""

from __future__ import annotations

from dataclasses import dataclass

from rendio.platform.services import CoreServices
from rendio.push.apns import ApnsClient


@dataclass(frozen=True)
class PushServices(CoreServices):
    # None when the APNs settings are not given: tokens are still kept, nothing is sent.
    apns: ApnsClient | None
