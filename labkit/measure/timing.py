"""Timing and machine measurements: device sync, forward cost against tokens, copy and matmul rates."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from labkit.core.kvcache import crop, new_cache
from labkit.models.load import as_target


def sync(device: torch.device) -> None:
    """Wait for the device: timings read after it (a no-op on CPU, where work is done when the call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device | str = "cpu") -> tuple[float, Any]:
    """Wall seconds of ``fn()`` (device-synchronized on both ends) and its result."""
    dev = torch.device(device)
    sync(dev)
    t0 = time.perf_counter()
    out = fn()
    sync(dev)
    return time.perf_counter() - t0, out


@torch.inference_mode()
def time_forward(target: Any, ks: Sequence[int], context: int = 100, repeats: int = 5) -> list[dict[str, Any]]:
    """Median ms of one target forward over k new tokens on top of ``context`` cached tokens (the verify step)."""
    t = as_target(target)
    dev = t.device
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, min(t.vocab_size, 30000), (context + max(ks),), generator=g).to(dev)
    cache = new_cache(t.model)
    t.model(input_ids=ids[None, :context], cache=cache, use_cache=True, logits_to_keep=1)
    rows = []
    for k in ks:
        x = ids[None, context: context + k]
        times = []
        for rep in range(repeats + 1):  # the first call of each shape warms up kernels and is not counted
            secs, _ = time_call(lambda x=x: t.model(input_ids=x, cache=cache, use_cache=True), dev)  # logits at all k
            if rep:
                times.append(secs)
            crop(cache, context)
        rows.append({"k": k, "ms": 1e3 * statistics.median(times), "device": dev.type})
    return rows


def verify_cost_curve(target: Any, ks: Sequence[int] = (1, 2, 4, 8), context: int = 100,
                      repeats: int = 5) -> dict[int, float]:
    """Cost of a verify forward over k+1 tokens relative to a 1-token forward, T(k+1)/T(1), for each k.

    The speed-up theory's c-free ingredient: near 1 the verify is almost free (memory-bound), near k+1 it costs as
    much as k+1 plain steps and no drafter can win.
    """
    rows = time_forward(target, sorted({1, *(k + 1 for k in ks)}), context=context, repeats=repeats)
    ms = {r["k"]: r["ms"] for r in rows}
    return {k: ms[k + 1] / ms[1] for k in ks}


def weight_bytes(model: Any) -> int:
    """Bytes of weights one decoding forward reads: every parameter once (a tied embedding / LM head counted once),
    except embedding tables that are only looked up (one row per token: e.g. Gemma 4's per-layer embeddings)."""
    head = model.get_output_embeddings()
    head_ptr = head.weight.data_ptr() if head is not None else None
    lookups = {m.weight.data_ptr() for m in model.modules() if isinstance(m, torch.nn.Embedding)} - {head_ptr}
    seen, total = set(lookups), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


@torch.inference_mode()
def copy_bandwidth(device: str | torch.device = "cpu", megabytes: int = 256, repeats: int = 5) -> float:
    """Memory bandwidth in bytes/s from copying a big tensor (read + write both counted)."""
    dev = torch.device(device)
    src = torch.empty(megabytes * 2**20, dtype=torch.uint8, device=dev).fill_(1)
    dst = torch.empty_like(src)
    best = min(time_call(lambda: dst.copy_(src), dev)[0] for _ in range(repeats + 1))
    return 2 * src.numel() / best


@torch.inference_mode()
def matmul_rate(device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16, n: int = 1024,
                repeats: int = 3) -> float:
    """FLOP/s of a square matmul: the compute ceiling the k-token forward runs into."""
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)
    best = min(time_call(lambda: a @ b, dev)[0] for _ in range(repeats + 1))
    return 2 * n**3 / best
