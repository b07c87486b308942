"""Bounded retries with exponential backoff, for the stores' transient failures.

Each store type decides, in one place, which of its errors are transient (a reset connection,
an S3 503 SlowDown, a database that is restarting) and calls ``retrying`` there; nothing else
in kennel retries store calls, so the worst case of a call is known: ``Backoff.attempts``
tries and at most ``Backoff.budget_s`` seconds of sleeping between them.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """``attempts`` tries in all; the n-th wait is ``base_s * 2**n`` capped at ``cap_s``, with
    up to 50 % random jitter taken off (so that many clients do not retry in step)."""

    attempts: int = 4
    base_s: float = 0.2
    cap_s: float = 2.0

    def delays(self) -> Iterator[float]:
        for n in range(self.attempts - 1):
            step = min(self.cap_s, self.base_s * 2**n)
            yield step * (1 - random.random() / 2)

    @property
    def budget_s(self) -> float:
        """The longest the waits between tries add up to."""
        return float(sum(min(self.cap_s, self.base_s * 2**n) for n in range(self.attempts - 1)))


def retrying(
    call: Callable[[], T],
    *,
    transient: Callable[[BaseException], bool],
    backoff: Backoff,
    what: str,
) -> T:
    """``call()``, tried again after a wait while it fails with an error ``transient`` accepts;
    the last error (or the first that is not transient) propagates unchanged."""
    delays = backoff.delays()
    while True:
        try:
            return call()
        except Exception as exc:
            delay = next(delays, None) if transient(exc) else None
            if delay is None:
                raise
            log.info("%s: %s; retrying in %.2f s", what, first_line(exc), delay)
            time.sleep(delay)


def first_line(exc: BaseException) -> str:
    """An exception as one short line: drivers' messages often run over several."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:300]
