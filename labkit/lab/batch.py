"""When spare compute runs out (notebook 10): verify-forward time for B sequences x (k+1) tokens, and the roofline.

A one-token forward reads every weight once and does ~2 FLOPs per weight: it waits on memory. A verify over k+1
tokens for each of B sequences does B·(k+1) times the arithmetic on the same weights. While that arithmetic fits
in the time memory takes, the verify is nearly free; once B·(k+1) passes the machine balance (FLOPs per byte the
machine can do, over FLOPs per byte the forward needs) the forward is compute bound and every verified token costs
full price. Serving at a large batch already spends the spare compute on the batch, so speculation has less of it
left to spend.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from labkit.core.device import sync
from labkit.core.kvcache import crop, new_cache
from labkit.core.verify_cost import VerifyCost
from labkit.models.load import as_target


@torch.inference_mode()
def time_batched_forward(target: Any, batches: Sequence[int], tokens: Sequence[int], context: int = 32,
                         repeats: int = 3, seed: int = 0) -> list[dict[str, Any]]:
    """Median ms of one forward over ``n`` new tokens for each of ``B`` sequences, on top of ``context`` cached
    tokens per sequence, for every B in ``batches`` and n in ``tokens`` (the verify step at batch B, k = n - 1)."""
    t = as_target(target)
    dev = t.device
    g = torch.Generator().manual_seed(seed)
    rows = []
    for B in batches:
        ids = torch.randint(10, min(t.vocab_size, 30000), (B, context + max(tokens)), generator=g).to(dev)
        cache = new_cache(t.model)
        t.model(input_ids=ids[:, :context], cache=cache, use_cache=True, logits_to_keep=1)
        for n in tokens:
            x = ids[:, context: context + n]
            times = []
            for rep in range(repeats + 1):  # the first call of each shape warms up and is not counted
                sync(dev)
                t0 = time.perf_counter()
                t.model(input_ids=x, cache=cache, use_cache=True)  # logits at every position, like a verify
                sync(dev)
                if rep:
                    times.append(time.perf_counter() - t0)
                crop(cache, context)
            rows.append({"batch": B, "tokens": n, "tokens_in_forward": B * n, "ms": 1e3 * statistics.median(times)})
    return rows


def roofline_ms(tokens_in_forward: int, weight_bytes: float, flops_per_token: float, bandwidth: float,
                flops: float) -> float:
    """The roofline's forward time: the slower of reading the weights once and doing the arithmetic for N tokens."""
    return 1e3 * max(weight_bytes / bandwidth, tokens_in_forward * flops_per_token / flops)


def compute_bound_from(weight_bytes: float, flops_per_token: float, bandwidth: float, flops: float) -> float:
    """Tokens per forward at which the arithmetic takes as long as reading the weights (the roofline's corner)."""
    return (weight_bytes / bandwidth) / (flops_per_token / flops)


def verify_cost_by_batch(rows: Sequence[dict[str, Any]]) -> dict[int, VerifyCost]:
    """{B: T(B, k+1) / T(B, 1) by draft length k}: the verify's cost in plain decoding steps of the same batch (the
    measured ratios of the median times in ``raw``)."""
    ms = {(r["batch"], r["tokens"]): r["ms"] for r in rows}
    ratios: dict[int, dict[int, float]] = {}
    for (B, n), v in ms.items():
        if n > 1:
            ratios.setdefault(B, {})[n - 1] = v / ms[(B, 1)]
    return {B: VerifyCost.from_measured(r, source="ratio of median forward times", where=f"batch {B}")
            for B, r in ratios.items()}


def figure_batch(rows: Sequence[dict[str, Any]], weight_bytes: float, flops_per_token: float, bandwidth: float,
                 flops: float) -> Any:
    """Measured ms per forward against tokens in the forward (B·(k+1)), one line per k+1, with the roofline."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for n in sorted({r["tokens"] for r in rows}):
        pts = sorted((r for r in rows if r["tokens"] == n), key=lambda r: r["batch"])
        fig.add_scatter(x=[r["tokens_in_forward"] for r in pts], y=[r["ms"] for r in pts], mode="lines+markers",
                        name=f"measured, {n} token{'s' if n > 1 else ''} per sequence",
                        text=[f"B={r['batch']}" for r in pts])
    xs = sorted({r["tokens_in_forward"] for r in rows})
    fig.add_scatter(x=xs, y=[roofline_ms(x, weight_bytes, flops_per_token, bandwidth, flops) for x in xs],
                    mode="lines", line=dict(dash="dash", color="#d6453d"),
                    name="roofline: max(weights ÷ bandwidth, N × FLOPs ÷ matmul rate)")
    fig.update_layout(template="plotly_white", height=360, title="One forward over B × (k+1) tokens",
                      xaxis_title="tokens in the forward, N = B·(k+1) (log)", yaxis_title="ms per forward (log)",
                      xaxis_type="log", yaxis_type="log", legend=dict(orientation="h", y=-0.25))
    return fig
