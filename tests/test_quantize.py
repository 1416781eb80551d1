"""labkit.lab.quantize, behind notebook 09 (quantized targets), on tiny models."""

from __future__ import annotations

import math

import pytest
import torch

from labkit.lab import quantize
from labkit.models.load import Target
from labkit.models.tiny import tiny_model


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
