"""The one thread policy: how many torch threads the CLI, the bench, `labkit doctor` and the notebooks use.

Why it matters: on a shared 2-core machine two OpenMP threads can be many times slower than one (a descheduled
thread stalls every barrier of a matrix multiply): plain decoding ran at 1.2 tok/s with torch's default threads and
8.7 tok/s with one thread on such a machine (load average ~3). On an idle machine more threads are faster.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

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
    """Threads from the load average alone, without measuring: $LABKIT_THREADS, else the cores other work leaves free
    (at least 1, at most 8). It lags a minute behind the machine; labkit itself uses ``choose_threads``. ``load``
    and ``n_cores`` default to this machine's (arguments for tests)."""
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


_CHOSEN: dict[str, tuple[float, int, dict[int, float]]] = {}  # "probe" -> (when, threads, medians)
CHOICE_TTL_S = 60.0  # a choice this fresh is reused: the CLI, the notebook set-up and the doctor agree within it


def matvec_probe(megabytes: int = 16, repeats: int = 12) -> Callable[[], float]:
    """Seconds of a few one-row bf16 matrix products over ``megabytes`` of weights: the shape of a decoding step
    (memory-bound, one barrier per product), without loading a model."""
    cols = megabytes * 2**20 // (2 * 2048)
    w = torch.randn(2048, cols).to(torch.bfloat16)
    x = torch.randn(1, 2048).to(torch.bfloat16)

    def probe() -> float:
        t0 = time.perf_counter()
        for _ in range(repeats):
            x @ w
        return time.perf_counter() - t0

    probe()  # first call: allocation and kernel selection
    return probe


def choose_threads(probe: Callable[[], float] | None = None, refresh: bool = False) -> tuple[int, dict[int, float]]:
    """The thread count labkit uses: $LABKIT_THREADS, else the faster of 1 and all cores by a short interleaved
    probe (``probe``; default ``matvec_probe``), measured now rather than read from the load average, which lags by
    a minute. The default probe's choice is cached for CHOICE_TTL_S so every caller in a session agrees."""
    env = env_threads()
    if env is not None:
        return env, {}
    if cores() == 1:
        return 1, {}
    now = time.monotonic()
    if probe is None and not refresh and "probe" in _CHOSEN and now - _CHOSEN["probe"][0] < CHOICE_TTL_S:
        return _CHOSEN["probe"][1], _CHOSEN["probe"][2]
    best, medians = fastest_threads(probe or matvec_probe(), rounds=5)
    if probe is None:
        _CHOSEN["probe"] = (now, best, medians)
    return best, medians


def set_threads(threads: str | int | None = "auto", probe: Callable[[], float] | None = None) -> int:
    """Set torch's intra-op threads and return the count: a number as given; "auto"/None = ``choose_threads``
    ($LABKIT_THREADS, else a short probe of 1 against all cores)."""
    if threads not in ("auto", None):
        n = int(threads)
        if n < 1:
            raise ValueError(f"threads: must be a positive integer or 'auto', got {threads!r}")
    else:
        n = choose_threads(probe)[0]
    torch.set_num_threads(n)
    return n


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_info() -> tuple[str, dict[str, bool]]:
    """The CPU's model name and which of CPU_FLAGS it reports (the platform's name and no flags where
    /proc/cpuinfo does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), {}
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
                platform.machine())
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    return name, {f: f in flags for f in CPU_FLAGS}
