"""labkit.lab.moe, behind notebook 08 (MoE targets), on tiny models."""

from __future__ import annotations

import pytest
import torch

from labkit.lab import moe
from labkit.models.tiny import tiny_model


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
