"""Timing primitives: device sync, forward cost against tokens (interleaved), copy and matmul rates.

labkit.measure.machine turns them into the one machine reference every notebook, the bench and the doctor quote.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from labkit.core.device import sync
from labkit.core.kvcache import crop, new_cache
from labkit.core.stats import iqr
from labkit.models.load import as_target


def time_call(fn: Callable[[], Any], device: torch.device | str = "cpu") -> tuple[float, Any]:
    """Wall seconds of ``fn()`` (device-synchronized on both ends) and its result."""
    dev = torch.device(device)
    sync(dev)
    t0 = time.perf_counter()
    out = fn()
    sync(dev)
    return time.perf_counter() - t0, out


@torch.inference_mode()
def forward_times(target: Any, ns: Sequence[int], context: int = 100, rounds: int = 5, seed: int = 0
                  ) -> dict[int, list[float]]:
    """Seconds of one target forward over n new tokens (logits at all n, as a verify needs) on top of ``context``
    cached tokens, for each n, ``rounds`` times: interleaved in a shuffled order per round so machine noise hits every
    n alike. The first call of each shape warms kernels up and is not counted; the cache is rolled back after each."""
    t = as_target(target)
    dev = t.device
    ns = sorted(set(ns))
    context = max(1, min(context, t.max_context - max(ns) - 1))
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(10, t.vocab_size - 1), min(t.vocab_size, 30000), (context + max(ns),), generator=g).to(dev)
    cache = new_cache(t.model)
    t.model(input_ids=ids[None, :context], cache=cache, use_cache=True, logits_to_keep=1)

    def forward(n: int) -> float:
        secs, _ = time_call(lambda: t.model(input_ids=ids[None, context: context + n], cache=cache, use_cache=True),
                            dev)
        crop(cache, context)
        return secs

    for n in ns:
        forward(n)
    rng = random.Random(seed)
    times: dict[int, list[float]] = {n: [] for n in ns}
    for _ in range(rounds):
        order = list(ns)
        rng.shuffle(order)
        for n in order:
            times[n].append(forward(n))
    return times


def time_forward(target: Any, ns: Sequence[int], context: int = 100, repeats: int = 5) -> list[dict[str, Any]]:
    """Median ms of one target forward over n new tokens on top of ``context`` cached tokens (``forward_times``,
    interleaved), with the interquartile range: one model's forward cost against n (notebooks 08, 09). Each row has
    n and the draft length k = n - 1 whose verify it is."""
    times = forward_times(target, ns, context, repeats)
    dev = as_target(target).device.type
    return [{"n": n, "k": n - 1, "ms": 1e3 * statistics.median(ts), "iqr_ms": 1e3 * iqr(ts), "device": dev}
            for n, ts in times.items()]


@torch.inference_mode()
def product_times(weight: torch.Tensor, rows: Sequence[int] = (1, 4), rounds: int = 9) -> dict[int, float]:
    """Median ms of ``x @ weight.T`` for x with each number of rows, interleaved: whether a one-row product (a
    one-token forward's) takes a different kernel path than a small matrix product (a verify's)."""
    xs = {n: torch.randn(n, weight.shape[1], dtype=weight.dtype, device=weight.device) for n in rows}
    for x in xs.values():
        x @ weight.T
    times: dict[int, list[float]] = {n: [] for n in rows}
    for _ in range(rounds):
        for n in rows:
            times[n].append(time_call(lambda n=n: xs[n] @ weight.T, weight.device)[0])
    return {n: 1e3 * statistics.median(ts) for n, ts in times.items()}


def weight_bytes(model: Any) -> int:
    """Bytes of weights one decoding forward reads: every parameter once (a tied embedding / LM head counted once),
    except embedding tables that are only looked up (one row per token: e.g. Gemma 4's per-layer embeddings)."""
    from labkit.models.int8 import Int8Linear, int8_bytes

    head = model.get_output_embeddings()
    head_ptr = head.weight.data_ptr() if head is not None else None
    lookups = {m.weight.data_ptr() for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    # an int8 head reads its own int8 copy; the bf16 rows it still points at are only looked up (by drafters)
    lookups = lookups | {head_ptr} if isinstance(head, Int8Linear) else lookups - {head_ptr}
    seen, total = set(lookups), int8_bytes(model)
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


@torch.inference_mode()
def copy_rates(device: str | torch.device = "cpu", megabytes: int = 256, repeats: int = 5) -> list[float]:
    """Memory bandwidth in bytes/s from copying a big tensor (read + write both counted), once per repeat after a
    warm-up copy (labkit.measure.machine keeps the median and spread)."""
    dev = torch.device(device)
    src = torch.empty(megabytes * 2**20, dtype=torch.uint8, device=dev).fill_(1)
    dst = torch.empty_like(src)
    time_call(lambda: dst.copy_(src), dev)
    return [2 * src.numel() / time_call(lambda: dst.copy_(src), dev)[0] for _ in range(repeats)]


@torch.inference_mode()
def matmul_rate(device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16, n: int = 1024,
                repeats: int = 3) -> float:
    """FLOP/s of a square matmul: the compute ceiling the k-token forward runs into."""
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)
    best = min(time_call(lambda: a @ b, dev)[0] for _ in range(repeats + 1))
    return 2 * n**3 / best
