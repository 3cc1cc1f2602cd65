"""One OpenMP worker team at a time, so forward passes in a worker thread run at full speed.

libgomp (torch's OpenMP runtime, and llama.cpp's when both are loaded: they share it by soname) gives every
thread that runs a parallel region a team of worker threads of its own, kept until that thread exits. Once the
process holds more of those workers than there are CPUs, libgomp shortens their spin-wait between regions to
almost nothing, so every parallel region of every team wakes its workers through the kernel. The server loads
its model in the main thread (one team) and decodes in its scheduler thread (a second team): measured on a
2-core CPU, a SmolLM2-135M decode step of 16 rows took 80 ms in the main thread and 108 ms in a second thread,
and 78 ms there once the main thread's team was let go.

`release_openmp_threads()` lets go of the calling thread's team (OpenMP 5's `omp_pause_resource_all`); a thread
that needs one again makes a new one on its next parallel region.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

OMP_PAUSE_HARD = 2  # omp_pause_resource_t: free the calling thread's team and its workers
_RUNTIMES: list[ctypes.CDLL] = []  # the runtime once found
P = ParamSpec("P")
R = TypeVar("R")


def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime torch runs on (libgomp, or Intel's/LLVM's libomp), or None (torch not loaded yet, or not
    Linux). Wheels that bundle a renamed copy of their own (sentencepiece's `libgomp-<hash>.so`) are not it."""
    if _RUNTIMES:
        return _RUNTIMES[0]
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    loaded = {Path(fields[-1]) for fields in (line.split() for line in maps.splitlines()) if len(fields) >= 6}
    for path in sorted(loaded, key=lambda p: "torch" not in p.parts):  # torch's own first
        if path.name.split(".so")[0] in ("libgomp", "libiomp5", "libomp"):
            try:
                runtime = ctypes.CDLL(str(path))
            except OSError:
                continue
            if hasattr(runtime, "omp_pause_resource_all"):
                runtime.omp_pause_resource_all.argtypes = [ctypes.c_int]
                _RUNTIMES.append(runtime)
                return runtime
    return None


def release_openmp_threads() -> bool:
    """Free the calling thread's OpenMP worker team (call it in a thread done with torch work, before another
    thread takes that work over); whether there was a runtime to ask."""
    runtime = _openmp_runtime()
    return runtime is not None and runtime.omp_pause_resource_all(OMP_PAUSE_HARD) == 0


def one_call_at_a_time(function: Callable[P, R]) -> Callable[P, R]:
    """`function` run under a lock, from whichever worker thread calls it (`asyncio.to_thread`), with that thread's
    OpenMP team let go after each call: the team of one idle worker thread never slows the next. The calling
    thread's team (it loaded the model) is let go now."""
    lock = threading.Lock()

    @functools.wraps(function)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        with lock:
            try:
                return function(*args, **kwargs)
            finally:
                release_openmp_threads()

    release_openmp_threads()
    return locked
