"""A byte budget for decoding: the decode memory of all images being decoded at once stays under
``total``, whatever the concurrency, so four hostile 16-bit uploads cost one budget, not four
gigabytes. A request whose image would not fit waits for others to finish; an image that
could never fit is rejected before it is decoded."""

from __future__ import annotations

import asyncio

from kennel.imaging import ImageRejected


class DecodeBudget:
    """Acquired on the event loop; ``release`` may be called from any thread."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def acquire(self, cost: int) -> None:
        if cost > self.total:
            raise ImageRejected(
                f"decompression bomb: decoding needs {cost} bytes (budget {self.total})"
            )
        self._loop = asyncio.get_running_loop()
        while self.used + cost > self.total:
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
        self.used += cost

    def release(self, cost: int) -> None:
        """Give ``cost`` back; thread-safe (decoder threads call it when they finish)."""
        assert self._loop is not None, "release without acquire"
        self._loop.call_soon_threadsafe(self._give_back, cost)

    def _give_back(self, cost: int) -> None:
        self.used -= cost
        for waiter in self._waiters:  # each re-checks whether it fits now
            if not waiter.done():
                waiter.set_result(None)
