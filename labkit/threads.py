"""The one thread policy: how many torch threads the CLI, the bench, `labkit doctor` and the notebooks use.

Why it matters: on a shared 2-core machine two OpenMP threads can be many times slower than one (a descheduled
thread stalls every barrier of a matrix multiply): plain decoding ran at 1.2 tok/s with torch's default threads and
8.7 tok/s with one thread on such a machine (load average ~3). On an idle machine more threads are faster.
"""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Callable

import torch

MAX_THREADS = 8  # a 270M-parameter forward stops scaling well before that


def cores() -> int:
    """CPU cores this process may run on."""
    with contextlib.suppress(AttributeError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), None where the OS does not report it."""
    with contextlib.suppress(OSError, AttributeError):
        return os.getloadavg()[0]
    return None


def env_threads() -> int | None:
    """$LABKIT_THREADS when it is a positive integer."""
    env = os.environ.get("LABKIT_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else None


def default_threads(load: float | None = None, n_cores: int | None = None) -> int:
    """Threads to use without measuring: $LABKIT_THREADS, else the cores other work leaves free (at least 1, at
    most 8). ``load`` and ``n_cores`` default to this machine's (arguments for tests)."""
    env = env_threads()
    if env is not None:
        return env
    n_cores = n_cores or cores()
    load = load_average() if load is None else load
    free = n_cores if load is None else round(n_cores - load)
    return max(1, min(free, n_cores, MAX_THREADS))


def fastest_threads(probe: Callable[[], float], candidates: list[int] | None = None, rounds: int = 3
                    ) -> tuple[int, dict[int, float]]:
    """The thread count whose ``probe()`` (seconds of some work) has the lowest median, interleaved over rounds so
    machine noise hits every count alike; returns it and the median seconds per count."""
    candidates = candidates or sorted({1, min(cores(), MAX_THREADS)})
    before = torch.get_num_threads()
    times: dict[int, list[float]] = {n: [] for n in candidates}
    try:
        for _ in range(rounds):
            for n in candidates:
                torch.set_num_threads(n)
                times[n].append(probe())
    finally:
        torch.set_num_threads(before)
    medians = {n: statistics.median(t) for n, t in times.items()}
    return min(medians, key=medians.get), medians


def set_threads(threads: str | int | None = "auto", probe: Callable[[], float] | None = None) -> int:
    """Set torch's intra-op threads and return the count: a number as given; "auto"/None = $LABKIT_THREADS, else
    the faster of 1 and all cores by ``probe`` when one is given, else `default_threads()` (free cores)."""
    if threads not in ("auto", None):
        n = int(threads)
        if n < 1:
            raise ValueError(f"threads: must be a positive integer or 'auto', got {threads!r}")
    elif env_threads() is not None:
        n = env_threads()
    elif probe is not None and cores() > 1:
        n = fastest_threads(probe)[0]
    else:
        n = default_threads()
    torch.set_num_threads(n)
    return n
