"""Bounded polling for end-to-end tests (tests never assert on time)."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def eventually(fn: Callable[[], T], timeout: float = 120, interval: float = 1.0, what: str = "condition") -> T:
    """Call ``fn`` until it returns a truthy value; fail with the last value or error."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except AssertionError as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f}s; last: {last!r}")
        time.sleep(interval)
