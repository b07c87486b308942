"""Dynamic micro-batching: requests wait at most ``max_wait_ms`` to share one inference of up to
``max_batch`` images. The queue is bounded; when it is full the caller learns at once
(``QueueFull``), so memory never grows without bound.

The wait is adaptive: callers announce themselves (``inflight``) before they start decoding, so
a batch waits only while other requests are on their way; a lone request runs at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class QueueFull(Exception):
    """The batcher's queue is full; retry later."""


class MicroBatcher(Generic[In, Out]):
    def __init__(
        self,
        run: Callable[[Sequence[In]], Sequence[Out]],
        *,
        max_batch: int,
        max_wait_ms: float,
        queue_size: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.run = run
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.queue_size = queue_size
        self.on_batch = on_batch
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]] | None = None
        self._task: asyncio.Task[None] | None = None
        # One inference at a time: ONNX Runtime already uses every core inside a batch.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kennel-infer")
        self.inflight = 0  # requests announced by callers and not yet answered

    @contextlib.contextmanager
    def announce(self) -> Iterator[None]:
        """Wrap a request from arrival to answer, so batches know whether to wait for it."""
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1

    @property
    def alone(self) -> bool:
        """At most one announced request on its way and none queued: nobody to wait for or to
        share a batch with, so a thread hop would cost more than it frees."""
        return self.inflight <= 1 and (self._queue is None or self._queue.empty())

    @property
    def depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        self._queue = asyncio.Queue(self.queue_size)
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            # let queued work finish, then stop
            while self._queue is not None and not self._queue.empty():
                await asyncio.sleep(0.005)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, item: In) -> Out:
        assert self._queue is not None, "batcher not started"
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, future))
        except asyncio.QueueFull as exc:
            raise QueueFull() from exc
        return await future

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                if self.inflight <= len(batch) + self._queue.qsize():
                    if self._queue.empty():
                        break  # nobody else is on the way: do not wait
                    batch.append(self._queue.get_nowait())
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if self._queue.empty():
                        break
                    batch.append(self._queue.get_nowait())
                    continue
                try:
                    async with asyncio.timeout(remaining):  # wait_for would add a task
                        item = await self._queue.get()
                except TimeoutError:
                    break
                batch.append(item)
            live = [(item, fut) for item, fut in batch if not fut.done()]  # skip timed-out ones
            if not live:
                continue
            if self.on_batch:
                self.on_batch(len(live))
            try:
                items = [i for i, _ in live]
                if len(live) == 1 and self.alone:
                    results = self.run(items)  # inline, on the loop
                else:
                    results = await loop.run_in_executor(self._executor, self.run, items)
            except Exception as exc:
                for _item, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_item, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
