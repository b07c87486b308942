"""Training throughput on real cached images (memmap + tensor augmentation) versus the same
model fed random tensors: the input pipeline must not be the bottleneck (goal ratio >= 0.9).

Rounds alternate (random tensors then real images, then the other way round, ...) so that a
change in the machine's load falls on both; the figure is the median of the rounds' ratios, with
the load average before and after (on a shared machine absolute rates mean little). Beside the
wall-clock ratio it gives the ratio of images per CPU-second of the process: on a busy machine
that one still says how much compute the input path costs, where wall time mostly says how
the scheduler shared the cores out. Last, the input path alone (memmap read and augmentation of
a batch) is timed in CPU-seconds against the model's CPU-seconds per step.

    .venv/bin/python benchmarks/train_throughput.py [--data PATH_TO_ZIP] [--rounds 3]
        [--steps 6] [--arch efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kennel.config import TrainConfig, init_project
from kennel.train.augment import Prefetcher, augment
from kennel.train.data import build_image_set
from kennel.train.trainer import make_model
from kennel.wiring import Workspace


def _rate(
    model: torch.nn.Module,
    batches: list[torch.Tensor] | None,
    images: np.ndarray | None,
    batch: int,
    steps: int,
    size: int,
) -> tuple[float, float]:
    """(images per second of wall time, images per CPU-second of this process, all threads)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    y = torch.randint(0, 2, (batch,))
    model.train()
    total = steps + 2  # two warm-up steps
    if images is not None:
        picks = [np.sort(rng.choice(len(images), batch)) for _ in range(total)]
        source = iter(
            Prefetcher(  # the trainer's own input path
                lambda i: augment(torch.from_numpy(images[picks[i]]), 0.5, gen), total
            )
        )
    else:
        assert batches is not None
        source = (batches[i % len(batches)] for i in range(total))
    began = cpu_began = None
    for step, x in enumerate(source):
        if step == 2:
            began, cpu_began = time.perf_counter(), time.process_time()
        logits, _ = model(x)
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert began is not None and cpu_began is not None
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    return batch * steps / wall, batch * steps / cpu


def _input_cpu(images: np.ndarray, batch: int, count: int = 8) -> float:
    """CPU-seconds of this process per batch for the input path alone (memmap read, augment
    on the Prefetcher's thread, as the trainer runs it), with the model idle."""
    rng = np.random.default_rng(1)
    gen = torch.Generator().manual_seed(1)
    picks = [np.sort(rng.choice(len(images), batch)) for _ in range(count + 1)]
    source = iter(
        Prefetcher(lambda i: augment(torch.from_numpy(images[picks[i]]), 0.5, gen), count + 1)
    )
    next(source)
    began = time.process_time()
    for _ in source:
        pass
    return (time.process_time() - began) / count


ARCHS = {"small_cnn": (96, 64), "efficientnet_lite0": (224, 32)}  # image size, batch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/datasets/dogs-vs-cats-mini.zip")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of rounds, alternating")
    parser.add_argument("--arch", choices=sorted(ARCHS), action="append")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="kennel-thru-"))
    project, _ = init_project(work / "p")
    ws = Workspace(project)
    results = []
    try:
        version = ws.ingestor().run(ws.source(args.data), "bench").version
        rows = ws.catalog.rows(version)
        for arch in args.arch or list(ARCHS):
            size, batch = ARCHS[arch]
            data = build_image_set(
                rows,
                ["cat", "dog"],
                version_id=version.id,
                size=size,
                content=ws.content,
                artifacts_url=project.artifacts_url,
                cache_root=work / "cache",
            )
            cfg = TrainConfig(arch=arch, image_size=size)  # type: ignore[arg-type]
            fake = [
                torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
                for _ in range(2)
            ]
            models = {"tensors": make_model(cfg, 2), "real": make_model(cfg, 2)}
            load_before = os.getloadavg()
            rates: dict[str, list[float]] = {"tensors": [], "real": []}
            cpu_rates: dict[str, list[float]] = {"tensors": [], "real": []}
            for r in range(args.rounds):
                for kind in ("tensors", "real") if r % 2 == 0 else ("real", "tensors"):
                    feed = (fake, None) if kind == "tensors" else (None, data.images)
                    wall, cpu = _rate(models[kind], *feed, batch, args.steps, size)
                    rates[kind].append(wall)
                    cpu_rates[kind].append(cpu)
            ratios = [real / t for real, t in zip(rates["real"], rates["tensors"], strict=True)]
            cpu_ratios = [
                real / t for real, t in zip(cpu_rates["real"], cpu_rates["tensors"], strict=True)
            ]
            input_cpu = _input_cpu(data.images, batch)
            model_cpu = batch / statistics.median(cpu_rates["tensors"])
            results.append(
                {
                    "arch": arch,
                    "image_size": size,
                    "batch": batch,
                    "rounds": args.rounds,
                    "steps_per_round": args.steps,
                    "random_tensors_img_s": [round(v, 1) for v in rates["tensors"]],
                    "real_data_img_s": [round(v, 1) for v in rates["real"]],
                    "ratios": [round(v, 3) for v in ratios],
                    "median_ratio": round(statistics.median(ratios), 3),
                    "random_tensors_img_per_cpu_s": [round(v, 2) for v in cpu_rates["tensors"]],
                    "real_data_img_per_cpu_s": [round(v, 2) for v in cpu_rates["real"]],
                    "cpu_ratios": [round(v, 3) for v in cpu_ratios],
                    "median_cpu_ratio": round(statistics.median(cpu_ratios), 3),
                    "input_cpu_s_per_batch": round(input_cpu, 4),
                    "model_cpu_s_per_batch": round(model_cpu, 3),
                    "input_share_of_cpu": round(input_cpu / (input_cpu + model_cpu), 4),
                    "load_avg_1m_before_after": [
                        round(load_before[0], 2),
                        round(os.getloadavg()[0], 2),
                    ],
                }
            )
    finally:
        ws.close()
    print(
        json.dumps(
            {"benchmark": "train_throughput", "cores": os.cpu_count(), "results": results}, indent=2
        )
    )


if __name__ == "__main__":
    main()
