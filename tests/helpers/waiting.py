"""Waiting, in async tests, for something another task or process makes true."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def eventually(check: Callable[[], Any], timeout: float = 10) -> Any:
    """The first truthy value of `check()` (awaited when it is a coroutine), or its last value
    once `timeout` seconds have passed: the caller asserts on it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)
