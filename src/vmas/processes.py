"""Worker process pools whose workers die with the process that made them.

A ``ProcessPoolExecutor`` worker waits on its task pipe; when its parent is killed outright
(``kill -9``, the OOM killer, a Kubernetes pod's container being stopped hard) nothing closes that
pipe for it (its sibling workers hold the other end too), so every worker lives on as an orphan,
holding memory, a GPU or a half-written temporary file. On Linux each worker therefore asks the
kernel, as it starts, for a signal when its parent dies (``prctl(PR_SET_PDEATHSIG)``), then checks
that the parent has not already gone before the request took effect (the race), and leaves if it
has. Elsewhere (no ``prctl``) this is a no-op and workers behave as before.

One kernel caveat: the signal fires when the parent *thread* that started the worker ends, not the
whole process. :func:`worker_pool` is meant to be created, used and shut down by one thread (as
``run_stage`` and ``synthesize_dataset`` do), so the workers never outlive that thread anyway.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_NO_PARENT_CHECK = -1


def _prctl():
    """libc's ``prctl`` or None (not Linux, or no libc found)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # the C library already loaded
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def die_with_parent(parent_pid: int = _NO_PARENT_CHECK, sig: int = signal.SIGKILL) -> bool:
    """Make this process receive ``sig`` when its parent dies; exit now if it already has.

    ``parent_pid`` is the pid the parent had when it started this process (pass ``os.getpid()``
    from the parent): if ``os.getppid()`` differs once the signal is armed, the parent died before
    that, no signal will come, and the process exits at once (status 1). ``_NO_PARENT_CHECK``
    skips that check (a forkserver worker, whose parent is the fork server). Returns whether the
    signal is armed (False where ``prctl`` is unavailable: nothing changes then).
    """
    prctl = _prctl()
    if prctl is None:
        return False
    if prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if parent_pid != _NO_PARENT_CHECK and os.getppid() != parent_pid:
        os._exit(1)  # the parent is already gone: nothing would ever read this worker's results
    return True


def worker_pool(workers: int, start_method: str | None = None) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` of ``workers`` processes started with ``start_method`` ("fork",
    "spawn", "forkserver"; None: the platform's default) whose workers die with this process
    (see the module docstring). Create, use and shut it down in one thread."""
    context = multiprocessing.get_context(start_method)
    # a forkserver worker's parent is the fork server (which leaves when this process does), not us
    parent = _NO_PARENT_CHECK if context.get_start_method() == "forkserver" else os.getpid()
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=die_with_parent,
                               initargs=(parent,))
