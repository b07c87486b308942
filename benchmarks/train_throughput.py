"""Training throughput on real cached images (memmap + tensor augmentation) versus the same
model fed random tensors: the input pipeline must not be the bottleneck (goal ratio >= 0.9).

    .venv/bin/python benchmarks/train_throughput.py [--data PATH_TO_ZIP]
"""

from __future__ import annotations

import argparse
import json
import os
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
) -> float:
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
    began = None
    for step, x in enumerate(source):
        if step == 2:
            began = time.perf_counter()
        logits, _ = model(x)
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert began is not None
    return batch * steps / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/datasets/dogs-vs-cats-mini.zip")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="kennel-thru-"))
    project, _ = init_project(work / "p")
    ws = Workspace(project)
    results = []
    try:
        version = ws.ingestor().run(ws.source(args.data), "bench").version
        rows = ws.catalog.rows(version)
        for arch, size, batch in (("small_cnn", 96, 64), ("efficientnet_lite0", 224, 32)):
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
            model = make_model(cfg, 2)
            fake = [
                torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
                for _ in range(2)
            ]
            tensors = _rate(model, fake, None, batch, args.steps, size)
            real = _rate(make_model(cfg, 2), None, data.images, batch, args.steps, size)
            results.append(
                {
                    "arch": arch,
                    "image_size": size,
                    "batch": batch,
                    "random_tensors_img_s": round(tensors, 1),
                    "real_data_img_s": round(real, 1),
                    "ratio": round(real / tensors, 3),
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
