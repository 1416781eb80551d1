"""int8 weight-only targets (labkit.models.int8): the kernel computes what the stored int8 weights say, the weights
read per token halve, and speculative decoding stays lossless against the int8 target (issue 18, item 7)."""

import pytest
import torch

from labkit import SpeculativeDecoder
from labkit.drafters import DraftModelDrafter, NGramDrafter
from labkit.measure.timing import weight_bytes
from labkit.models import as_target, tiny_model
from labkit.models.int8 import Int8Linear, int8_bytes, is_int8, quantize_int8

PROMPT = [1, 5, 9, 14, 3, 7, 22, 5, 9, 14, 30, 2, 11]


def int8_tiny(seed: int = 0):
    return quantize_int8(tiny_model(vocab_size=64, layers=2, hidden=64, seed=seed, dtype=torch.bfloat16))


def test_int8_linear_multiplies_by_its_stored_int8_weights():
    torch.manual_seed(0)
    w = torch.randn(96, 64, dtype=torch.bfloat16)
    lin = Int8Linear(w)
    assert lin.qweight.dtype == torch.int8 and lin.qweight.abs().max() <= 127
    dequant = lin.qweight.float() * lin.scales.float()[:, None]
    # round to nearest: each weight within half a step of its row's scale (plus bf16 rounding of the scale)
    assert ((dequant - w.float()).abs() <= 0.51 * lin.scales.float()[:, None] + 1e-2 * w.float().abs()).all()
    x = torch.randn(3, 5, 64, dtype=torch.bfloat16)
    ref = x.float() @ dequant.T
    got = lin(x).float()
    assert got.shape == (3, 5, 96)
    assert torch.allclose(got, ref, atol=0.05, rtol=0.02)


def test_quantized_model_reads_half_the_bytes_and_keeps_the_embedding():
    model = tiny_model(vocab_size=64, layers=2, hidden=64, seed=0, dtype=torch.bfloat16)
    before = weight_bytes(model)
    embed = model.get_input_embeddings().weight
    quantize_int8(model)
    assert is_int8(model) and as_target(model).weight_format == "int8"
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    head = model.get_output_embeddings()
    assert embed.dtype == torch.bfloat16 and head.weight.dtype == torch.bfloat16  # drafters read bf16 rows
    after = weight_bytes(model)
    norms = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "norm" in n)
    assert after == int8_bytes(model) + norms
    assert after < 0.6 * before


@pytest.mark.parametrize("drafter", ["ngram", "draft-model"])
def test_speculative_greedy_equals_plain_greedy_on_an_int8_target(drafter):
    target = as_target(int8_tiny())
    plain = SpeculativeDecoder(target, None).generate(PROMPT, max_new_tokens=24).token_ids
    d = NGramDrafter(2) if drafter == "ngram" else DraftModelDrafter(int8_tiny(seed=1))
    spec = SpeculativeDecoder(target, d, k=3).generate(PROMPT, max_new_tokens=24)
    assert spec.token_ids == plain
    assert spec.stats.counts.rounds < 24 or drafter == "draft-model"  # n-gram drafts on this repeating prompt


def test_load_target_int8_on_the_embedded_model_is_close_to_bf16():
    from labkit.lab.quantize import divergence
    from labkit.models.load import load_target

    bf16 = load_target("gemma3-270m", dtype="bf16", progress=False)
    int8 = load_target("gemma3-270m", dtype="int8", progress=False)
    assert int8.weight_format == "int8" and weight_bytes(int8.model) < 0.55 * weight_bytes(bf16.model)
    q = divergence(bf16, {"int8": int8}, ["The history of the bicycle begins in the early nineteenth century, when"])
    assert q["int8"]["greedy_agreement"] >= 0.8 and q["int8"]["kl_mean"] < 0.1, q
