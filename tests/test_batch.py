"""labkit.lab.batch, behind notebook 10 (batch size), on tiny models."""

from __future__ import annotations

import pytest

from labkit.lab import batch
from labkit.models.tiny import tiny_model


def test_time_batched_forward_rows_and_cost():
    m = tiny_model()
    rows = batch.time_batched_forward(m, [1, 3], [1, 4], context=6, repeats=1)
    assert [(r["batch"], r["tokens"], r["tokens_in_forward"]) for r in rows] == [(1, 1, 1), (1, 4, 4), (3, 1, 3),
                                                                                  (3, 4, 12)]
    assert all(r["ms"] > 0 for r in rows)
    cost = batch.verify_cost_by_batch(rows)
    assert set(cost) == {1, 3} and set(cost[1].ratios) == {3} and cost[3].where == "batch 3"
    ms = {(r["batch"], r["tokens"]): r["ms"] for r in rows}
    assert cost[3].raw[3] == pytest.approx(ms[(3, 4)] / ms[(3, 1)])
    assert cost[3].ratios[3] == pytest.approx(max(1.0, ms[(3, 4)] / ms[(3, 1)]))  # what the theory computes with


def test_roofline():
    # 1 GB of weights at 100 GB/s = 10 ms; 1 GFLOP per token at 1 TFLOP/s = 1 ms: the corner is at 10 tokens
    assert batch.compute_bound_from(1e9, 1e9, 100e9, 1e12) == pytest.approx(10)
    assert batch.roofline_ms(1, 1e9, 1e9, 100e9, 1e12) == pytest.approx(10)
    assert batch.roofline_ms(40, 1e9, 1e9, 100e9, 1e12) == pytest.approx(40)
