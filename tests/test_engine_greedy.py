"""Greedy speculative decoding must reproduce plain greedy decoding token for token (fp32)."""

import pytest
import torch

from labkit import SpeculativeDecoder
from labkit.drafters import DraftModelDrafter, EarlyExitDrafter, NGramDrafter, SyntheticDrafter

KS = [1, 2, 3, 5, 8, 16]
PROMPT = [1, 5, 9, 14, 3, 7, 22, 5, 9, 14, 30, 2, 11]  # longer than the tiny sliding window (8)


def drafters(draft_model):
    return {
        "draft-model": DraftModelDrafter(draft_model),
        "ngram": NGramDrafter(3),
        "early-exit": EarlyExitDrafter(1),
        "synthetic": SyntheticDrafter(0.7),
        "synthetic-perfect": SyntheticDrafter(1.0),
    }


@pytest.fixture(scope="module")
def reference(pair):
    target, _ = pair
    return SpeculativeDecoder(target, None).generate(PROMPT, max_new_tokens=40, seed=0)


def test_plain_loop_matches_transformers_generate(pair, reference):
    target, _ = pair
    hf = target.generate(torch.tensor([PROMPT]), max_new_tokens=40, do_sample=False)[0, len(PROMPT):].tolist()
    assert reference.token_ids == hf
    assert len(set(hf)) > 3, "tiny target degenerate: the equality tests would be vacuous"


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("name", ["draft-model", "ngram", "early-exit", "synthetic", "synthetic-perfect"])
def test_greedy_equals_plain(pair, reference, name, k):
    target, draft = pair
    out = SpeculativeDecoder(target, drafters(draft)[name], k=k).generate(PROMPT, max_new_tokens=40, seed=0)
    assert out.token_ids == reference.token_ids
    assert sum(len(r.emitted) for r in out.rounds) == 40


def test_drafters_actually_draft(pair):
    """Equality would be vacuous if no drafter ever proposed or had a draft accepted."""
    target, draft = pair
    for name, d in drafters(draft).items():
        st = SpeculativeDecoder(target, d, k=4).generate(PROMPT, max_new_tokens=40).stats
        assert st.counts.draft_tokens > 0, name
    perfect = SpeculativeDecoder(target, SyntheticDrafter(1.0), k=4).generate(PROMPT, max_new_tokens=40).stats
    assert perfect.draft_acceptance_rate == 1.0 and perfect.mean_acceptance_length == pytest.approx(40 / 8)


@pytest.mark.parametrize("name", ["draft-model", "ngram", "early-exit", "synthetic-perfect"])
@pytest.mark.parametrize("k", [2, 5, 8])
def test_eos_inside_a_draft(pair, reference, name, k):
    target, draft = pair
    ref = reference.token_ids
    # an EOS whose first occurrence is well inside the output
    idx = next(i for i in range(6, len(ref)) if ref[i] not in ref[:i])
    eos = ref[idx]
    out = SpeculativeDecoder(target, drafters(draft)[name], k=k).generate(PROMPT, max_new_tokens=40,
                                                                          eos_token_id=eos)
    assert out.token_ids == ref[: idx + 1]
    assert out.rounds[-1].finished == "eos"


def test_eos_cuts_an_accepted_draft(pair, reference):
    """With a perfect drafter the EOS is accepted mid-draft: the round must stop right there."""
    target, _ = pair
    ref = reference.token_ids
    idx = next(i for i in range(6, len(ref)) if ref[i] not in ref[:i])
    out = SpeculativeDecoder(target, SyntheticDrafter(1.0), k=8).generate(PROMPT, max_new_tokens=40,
                                                                         eos_token_id=ref[idx])
    last = out.rounds[-1]
    assert out.token_ids == ref[: idx + 1]
    assert len(last.emitted) < last.accepted + 1, "the EOS should have fallen inside the accepted draft"
    assert last.target_kv.after_rollback == last.context_len + len(last.emitted) - 1


@pytest.mark.parametrize("max_new", [1, 2, 3, 5, 7, 9, 13])
@pytest.mark.parametrize("name", ["draft-model", "ngram", "synthetic-perfect"])
def test_max_new_tokens_inside_a_draft(pair, reference, name, max_new):
    target, draft = pair
    out = SpeculativeDecoder(target, drafters(draft)[name], k=8).generate(PROMPT, max_new_tokens=max_new)
    assert out.token_ids == reference.token_ids[:max_new]
    assert out.rounds[-1].finished == "length"


def test_prompt_forms_agree(pair, reference):
    target, _ = pair
    dec = SpeculativeDecoder(target, NGramDrafter(3), k=4)
    for p in (PROMPT, torch.tensor(PROMPT), torch.tensor([PROMPT])):
        assert dec.generate(p, max_new_tokens=40).token_ids == reference.token_ids


def test_single_token_prompt(pair):
    target, draft = pair
    ref = SpeculativeDecoder(target, None).generate([1], max_new_tokens=12).token_ids
    for d in drafters(draft).values():
        assert SpeculativeDecoder(target, d, k=3).generate([1], max_new_tokens=12).token_ids == ref


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ngram", "early-exit", "synthetic"])
def test_embedded_model_fp32(embedded_fp32, name):
    target = embedded_fp32
    prompts = ["The capital of France is Paris. The capital of Spain is", "def add(a, b):\n    return"]
    make = {"ngram": lambda: NGramDrafter(3), "early-exit": lambda: EarlyExitDrafter(6),
            "synthetic": lambda: SyntheticDrafter(0.8)}[name]
    for prompt in prompts:  # 12 tokens: every k still drafts past the first rejection (fp32 is slow here)
        ref = SpeculativeDecoder(target, None).generate(prompt, max_new_tokens=12)
        for k in KS:
            out = SpeculativeDecoder(target, make(), k=k).generate(prompt, max_new_tokens=12)
            assert out.token_ids == ref.token_ids, (prompt, k)
            assert out.text == ref.text


@pytest.mark.slow
def test_embedded_model_eos_and_length(embedded_fp32):
    target = embedded_fp32
    prompt = "One, two, three, four, five, six,"
    ref = SpeculativeDecoder(target, None).generate(prompt, max_new_tokens=12).token_ids
    idx = next(i for i in range(3, len(ref)) if ref[i] not in ref[:i])
    for k in (2, 5, 16):
        cut = SpeculativeDecoder(target, SyntheticDrafter(1.0), k=k).generate(prompt, max_new_tokens=12,
                                                                            eos_token_id=ref[idx])
        assert cut.token_ids == ref[: idx + 1]
        short = SpeculativeDecoder(target, NGramDrafter(2), k=k).generate(prompt, max_new_tokens=7)
        assert short.token_ids == ref[:7]
