"""The micro-batcher waits only for requests that are on their way."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

from kennel.serve.batching import MicroBatcher


def test_lone_request_does_not_wait_and_announced_ones_share_a_batch() -> None:
    sizes: list[int] = []
    threads: list[str] = []

    def run(items: Sequence[int]) -> list[int]:
        threads.append(threading.current_thread().name)
        return [i * 10 for i in items]

    async def scenario() -> tuple[float, list[int]]:
        batcher: MicroBatcher[int, int] = MicroBatcher(
            run, max_batch=8, max_wait_ms=500, queue_size=8, on_batch=sizes.append
        )
        await batcher.start()
        began = time.perf_counter()
        with batcher.announce():
            assert await batcher.submit(1) == 10
        alone = time.perf_counter() - began

        async def late(value: int, delay: float) -> int:
            with batcher.announce():
                await asyncio.sleep(delay)  # e.g. still decoding its image
                return await batcher.submit(value)

        results = await asyncio.gather(late(2, 0.0), late(3, 0.05), late(4, 0.1))
        await batcher.stop()
        return alone, list(results)

    alone, results = asyncio.run(scenario())
    assert alone < 0.25  # far below max_wait: nobody else was coming
    assert results == [20, 30, 40]
    assert sizes == [1, 3]  # the three announced requests shared one batch
    # a lone request runs inline (a thread hop would cost more than it frees); a batch that
    # others may queue behind runs on the inference thread, so the loop keeps answering
    assert threads[0] == "MainThread" and threads[1].startswith("kennel-infer")


def test_a_batch_waits_at_most_max_wait_for_an_announced_request() -> None:
    sizes: list[int] = []

    async def scenario() -> tuple[float, list[int]]:
        batcher: MicroBatcher[int, int] = MicroBatcher(
            lambda items: [i + 1 for i in items],
            max_batch=8,
            max_wait_ms=100,
            queue_size=8,
            on_batch=sizes.append,
        )
        await batcher.start()

        async def slow(value: int) -> int:
            with batcher.announce():
                await asyncio.sleep(0.6)  # on its way far longer than max_wait
                return await batcher.submit(value)

        async def prompt(value: int) -> tuple[float, int]:
            with batcher.announce():
                began = time.perf_counter()
                result = await batcher.submit(value)
                return time.perf_counter() - began, result

        (waited, first), second = await asyncio.gather(prompt(1), slow(2))
        await batcher.stop()
        return waited, [first, second]

    waited, results = asyncio.run(scenario())
    assert results == [2, 3]
    assert 0.09 <= waited < 0.5  # it waited for the announced one, then went alone
    assert sizes == [1, 1]
