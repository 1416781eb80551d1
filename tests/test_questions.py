"""The measurement code behind notebooks 08 (MoE), 09 (quantized targets) and 10 (batch size), on tiny models."""

from __future__ import annotations

import math

import pytest
import torch

from labkit.lab import batch, moe, quantize
from labkit.models.load import Target
from labkit.models.tiny import tiny_model

# ------------------------------------------------------------------------------------------------ 08: MoE


def tiny_moe():
    return moe.random_moe(seed=0, dtype=torch.float32, hidden=64, layers=2, expert_width=16, vocab=256)


def test_uniform_expectation_formula():
    assert moe.expected_unique_experts(128, 8, 1) == pytest.approx(8)
    assert moe.expected_unique_experts(128, 128, 3) == pytest.approx(128)
    assert moe.expected_unique_experts(128, 8, 5) == pytest.approx(128 * (1 - (1 - 8 / 128) ** 5))


def test_moe_keeps_the_real_routing_and_the_twin_the_active_parameters():
    m = tiny_moe()
    assert (m.config.num_experts, m.config.num_experts_per_tok) == (128, 8)  # Qwen3-30B-A3B's, from the config
    d = moe.dense_twin(m)
    assert moe.active_params(d) == sum(p.numel() for p in d.parameters() if p is not d.get_input_embeddings().weight)
    routers = m.config.num_hidden_layers * m.config.num_experts * m.config.hidden_size
    assert moe.active_params(m) - moe.active_params(d) == routers, "only the routers differ"


def test_experts_touched_grows_from_top_k_and_stays_within_e():
    m = tiny_moe()
    rows = moe.experts_touched(m, [0, 1, 4, 16], context=8, trials=2)
    got = [r["experts"] for r in rows]
    assert got[0] == 8, "one token touches exactly its top-k experts"
    assert got == sorted(got) and got[-1] > 8 and got[-1] <= 128
    assert [r["uniform"] for r in rows][0] == pytest.approx(8)


def test_experts_touched_needs_an_moe():
    with pytest.raises(ValueError, match="no MoE layers"):
        moe.experts_touched(tiny_model(), [1])


def test_verify_bytes_counts_touched_experts_only():
    m = tiny_moe()
    all_bytes = sum(p.numel() * p.element_size() for n, p in m.named_parameters() if "embed_tokens" not in n)
    assert moe.verify_bytes(m, 128, bytes_per_weight=4) == pytest.approx(all_bytes)  # fp32 model
    assert moe.verify_bytes(m, 8) < moe.verify_bytes(m, 16) < moe.verify_bytes(m, 128)


def test_real_size_model_matches_qwen3_30b_a3b():
    real = moe.real_size_model()
    total = sum(p.numel() for p in real.parameters())
    assert 30.0e9 < total < 31.0e9
    assert 2.9e9 < moe.active_params(real) < 3.2e9  # 3.3B active counts the input embedding too


# ------------------------------------------------------------------------------------------------ 09: quantized


def test_rtn_levels_and_error_order():
    torch.manual_seed(0)
    w = torch.randn(64, 128)
    q8, q4 = quantize.quantize_rtn(w, 8), quantize.quantize_rtn(w, 4)
    for q, levels in ((q8, 256), (q4, 16)):
        for g in q.reshape(-1, 32):
            scale = g.abs().max() / (levels // 2 - 1)
            assert torch.allclose(g / scale, (g / scale).round(), atol=1e-4)  # integer multiples of the scale
    e8, e4 = (q8 - w).abs().max(), (q4 - w).abs().max()
    assert e8 < e4 and e4 <= w.abs().max() / 7 / 2 + 1e-6  # at most half a step
    assert q8.dtype == w.dtype and q8.shape == w.shape


def test_rtn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="bits"):
        quantize.quantize_rtn(torch.zeros(4, 32), 7)
    with pytest.raises(ValueError, match="group"):
        quantize.quantize_rtn(torch.zeros(4, 30), 4)


def test_quantized_copy_and_divergence():
    t = Target(tiny_model(vocab_size=64, hidden=32), None, "tiny")
    before = t.model.model.layers[0].mlp.up_proj.weight.clone()
    q8, q4 = quantize.quantized_copy(t, 8), quantize.quantized_copy(t, 4)
    assert torch.equal(t.model.model.layers[0].mlp.up_proj.weight, before), "the original stays untouched"
    assert not torch.equal(q4.model.model.layers[0].mlp.up_proj.weight, before)
    prompts = [list(range(3, 20)), list(range(30, 50))]
    d = quantize.divergence(t, {"same": t, "int8": q8, "int4": q4}, prompts)
    same, d8, d4 = d["same"], d["int8"], d["int4"]
    assert same["kl_mean"] == pytest.approx(0, abs=1e-6) and same["greedy_agreement"] == 1.0
    assert d8["positions"] == 37 and 0 <= d8["kl_mean"] < d4["kl_mean"]
    assert quantize.int_weight_bytes(q4.model, 4) < quantize.int_weight_bytes(q8.model, 8)


def test_finetune_head_trains_a_copy():
    from labkit.drafters.mtp.drafter import MTPDrafter

    t = Target(tiny_model(vocab_size=64, layers=2, hidden=32), None, "tiny")
    drafter = MTPDrafter.random_init(t, layers=1, seed=0, vocab_ids=torch.arange(64))
    original = {k: v.clone() for k, v in drafter.head.state_dict().items()}
    out = quantize.finetune_head(drafter, t, steps=3, sequences=4, new_tokens=12, heldout_sequences=2,
                                 heldout_tokens=10, eval_k=2)
    assert len(out["losses"]) == 3 and all(math.isfinite(x) for x in out["losses"])
    assert all(torch.equal(v, drafter.head.state_dict()[k]) for k, v in original.items()), "the input is not trained"
    tuned = out["drafter"].head.state_dict()
    assert any(not torch.equal(tuned[k].float(), v.float()) for k, v in original.items() if v.is_floating_point())
    assert len(out["before"]["acceptance_by_position"]) == len(out["after"]["acceptance_by_position"]) == 2


# ------------------------------------------------------------------------------------------------ 10: batch size


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
