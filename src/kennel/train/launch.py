"""``kennel train --nproc N``: torchrun, started for the command and dying with it.

The command starts ``python -m kennel.train.launch --standalone --nproc-per-node N -m
kennel.cli train ...`` (this module's ``main`` is torchrun's own, behind a lifeline): torchrun
starts N ranks of the same ``kennel train`` command on this machine and each joins the run
(``kennel.train.parallel.join``). Chain of lifelines: kill -9 of the command kills torchrun,
whose death kills every rank; nothing trains on unseen, and ``kennel train --resume`` (with or
without ``--nproc``) continues from the last checkpoint. On several machines, run torchrun on
each yourself (``torchrun --nnodes M --nproc-per-node N --rdzv-endpoint HOST:PORT -m
kennel.cli train ...``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from kennel.ingest.lifeline import die_with_parent

_PARENT = "KENNEL_LAUNCHER_PID"


def command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command line that runs ``kennel <argv>`` as ``nproc`` local ranks."""
    return [
        sys.executable,
        "-m",
        "kennel.train.launch",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "kennel.cli",
        *argv,
    ]


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``kennel <argv>`` on ``nproc`` ranks of this machine; torchrun's exit status."""
    env = {**os.environ, _PARENT: str(os.getpid())}
    # one process per core share (torchrun would otherwise warn and pick 1 thread each)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    with subprocess.Popen(command(nproc, argv), env=env) as proc:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (kennel.cli.app.interruptible):
            proc.send_signal(signal.SIGINT)  # torchrun passes it on to the ranks, stops them
            proc.wait()
            raise


def main() -> None:
    parent = os.environ.get(_PARENT)
    if parent is not None:
        die_with_parent(int(parent))
    from torch.distributed.run import main as torchrun

    torchrun(sys.argv[1:])


if __name__ == "__main__":
    main()
