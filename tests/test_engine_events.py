"""Round records: KV invariants, event consistency, hooks that only observe, summary statistics."""

import pytest
import torch

from labkit import SpeculativeDecoder
from labkit.drafters import DraftModelDrafter, EarlyExitDrafter, NGramDrafter, SyntheticDrafter

PROMPT = [1, 5, 9, 14, 3, 7, 22, 5, 9, 14, 30, 2, 11]


def all_drafters(draft):
    return [None, DraftModelDrafter(draft), NGramDrafter(3), EarlyExitDrafter(2), SyntheticDrafter(0.6)]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("idx", range(5))
def test_kv_and_event_invariants(pair, idx, temperature):
    target, draft = pair
    drafter = all_drafters(draft)[idx]
    seen = []
    out = SpeculativeDecoder(target, drafter, k=4, hooks=[seen.append]).generate(
        PROMPT, max_new_tokens=30, temperature=temperature, seed=3)
    assert seen == out.rounds  # hooks see exactly the rounds the result holds, in order
    total = 0
    for i, r in enumerate(out.rounds):
        assert r.index == i
        assert r.context_len == len(PROMPT) + total
        assert 0 <= r.accepted <= len(r.drafted) <= 4
        assert len(r.p) == len(r.q) == len(r.drafted)
        if temperature > 0:
            assert len(r.u) == len(r.drafted) and all(0 <= u < 1 for u in r.u)
        last = i == len(out.rounds) - 1
        if not last:
            assert len(r.emitted) == r.accepted + 1
            assert r.finished is None
        assert r.emitted[: min(r.accepted, len(r.emitted))] == r.drafted[: min(r.accepted, len(r.emitted))]
        if len(r.emitted) == r.accepted + 1:
            assert r.emitted[-1] == r.next_token
        assert (r.rejected_at is None) == (r.accepted == len(r.drafted))
        # target cache: every committed token but the newest, after every round
        kv = r.target_kv
        assert kv.before == r.context_len - 1
        assert kv.after_verify == kv.before + len(r.drafted) + 1
        assert kv.after_rollback == r.context_len + len(r.emitted) - 1
        assert kv.discarded == len(r.drafted) + 1 - len(r.emitted)
        # a drafter with its own cache holds committed tokens only: never a rejected one, and at most one
        # behind the target (the last draft after a full acceptance, fed with the next round's first step)
        if r.drafter_kv is not None:
            lag = kv.after_rollback - r.drafter_kv.after_rollback
            full = r.accepted == len(r.drafted) and len(r.drafted) > 0
            assert lag == (1 if full else 0) or (last and lag in (0, 1))
        total += len(r.emitted)
    assert total == len(out.token_ids) == 30
    assert out.rounds[-1].finished == "length"


def test_hooks_do_not_change_results(pair):
    target, draft = pair
    calls = []
    a = SpeculativeDecoder(target, DraftModelDrafter(draft), k=3).generate(PROMPT, 25, temperature=0.9, seed=7)
    b = SpeculativeDecoder(target, DraftModelDrafter(draft), k=3, hooks=[calls.append, lambda r: r.as_dict()]
                           ).generate(PROMPT, 25, temperature=0.9, seed=7)
    assert a.token_ids == b.token_ids
    assert [r.drafted for r in a.rounds] == [r.drafted for r in b.rounds]
    assert [r.u for r in a.rounds] == [r.u for r in b.rounds]
    assert len(calls) == len(b.rounds)


def test_seeded_sampling_is_reproducible(pair):
    target, draft = pair
    dec = SpeculativeDecoder(target, DraftModelDrafter(draft), k=3)
    runs = [dec.generate(PROMPT, 20, temperature=1.0, seed=s).token_ids for s in (1, 1, 2)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_stats_and_dataframe(pair):
    target, draft = pair
    out = SpeculativeDecoder(target, SyntheticDrafter(0.7), k=4).generate(PROMPT, max_new_tokens=40)
    st = out.stats
    drafted = sum(len(r.drafted) for r in out.rounds)
    accepted = sum(r.accepted for r in out.rounds)
    drafts = sum(len(r.drafted) > 0 for r in out.rounds)
    assert st.counts.draft_tokens == drafted and st.counts.accepted == accepted
    assert st.draft_acceptance_rate == pytest.approx(accepted / drafted)
    assert st.mean_acceptance_length == pytest.approx(1 + accepted / drafts)
    assert st.tokens_per_verify == pytest.approx(40 / len(out.rounds))
    by_pos = st.acceptance_by_position  # unconditional: never rises with the position
    assert all(a >= b for a, b in zip(by_pos, by_pos[1:], strict=False))
    assert st.end_to_end_tok_s == pytest.approx(40 / out.seconds)
    decode = sum(r.draft_seconds + r.verify_seconds for r in out.rounds)
    assert st.decode_tok_s == pytest.approx(40 / decode) and st.decode_tok_s > st.end_to_end_tok_s
    assert st.draft_cost is not None and st.draft_cost > 0
    df = out.to_dataframe()
    assert len(df) == len(out.rounds)
    assert {"accepted", "draft_seconds", "verify_seconds", "target_kv_after_rollback"} <= set(df.columns)
    tok = out.to_dataframe(per="token")
    assert len(tok) == drafted and tok["accepted"].sum() == accepted
    with pytest.raises(ValueError, match="per"):
        out.to_dataframe(per="nope")


def test_plain_decoding_is_one_token_per_round(pair):
    target, _ = pair
    out = SpeculativeDecoder(target, None).generate(PROMPT, max_new_tokens=10)
    assert len(out.rounds) == 10
    assert all(r.drafted == [] and len(r.emitted) == 1 and r.next_kind == "plain" for r in out.rounds)
    assert out.stats.tokens_per_verify == 1.0 and out.stats.mean_acceptance_length is None  # nothing drafted
    assert out.stats.draft_cost is None


def test_synthetic_alpha_controls_acceptance(pair):
    target, _ = pair
    st = SpeculativeDecoder(target, SyntheticDrafter(0.5), k=1).generate([1], max_new_tokens=200, seed=0).stats
    assert 0.38 < st.draft_acceptance_rate < 0.62  # ~100 Bernoulli(0.5) draws


def test_string_prompt_needs_tokenizer(pair):
    target, _ = pair
    with pytest.raises(ValueError, match="prompt"):
        SpeculativeDecoder(target, None).generate("hello", max_new_tokens=2)


def test_ngram_proposes_continuation():
    from labkit.core.sampling import Sampler, SamplingConfig
    from labkit.drafters.base import DraftContext

    ids = torch.tensor([7, 1, 2, 3, 4, 9, 1, 2, 3])
    ctx = DraftContext(ids, None, None, None, 0)
    prop = NGramDrafter(3).propose(ctx, 4, Sampler(SamplingConfig(), torch.Generator()))
    assert prop.tokens.tolist() == [4, 9, 1, 2]
    none = NGramDrafter(3, min_n=2).propose(DraftContext(torch.tensor([1, 2, 3, 4]), None, None, None, 0), 4, None)
    assert none.tokens.numel() == 0
