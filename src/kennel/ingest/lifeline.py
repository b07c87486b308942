"""Pool workers die with the process that started them.

A worker blocked on its task queue never notices that the parent was killed (``kill -9`` runs
no cleanup), so without this it waits forever holding its memory. On Linux the kernel sends the
worker SIGKILL when its parent dies (``PR_SET_PDEATHSIG``); everywhere a daemon thread also
checks every half second that the parent is still the one that started it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_S = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Call first thing in a child process; ``parent_pid`` is the parent's ``os.getpid()``."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no usable libc: the watchdog below still works
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), name="kennel-lifeline", daemon=True).start()


def _watch(parent_pid: int) -> None:
    while True:
        time.sleep(POLL_S)
        if os.getppid() != parent_pid:  # orphaned: reparented to init or a subreaper
            os._exit(1)
