"""The hybrid drafter: prompt lookup when a long enough match exists, the fallback model otherwise."""

import pytest
import torch

from labkit import SpeculativeDecoder, tiny_model
from labkit.drafters import DraftModelDrafter, HybridDrafter, make_drafter
from labkit.drafters.mtp.drafter import MTPDrafter
from labkit.models.load import as_target

PROMPT = [1, 5, 9, 14, 3, 7, 22, 5, 9, 14, 30, 2, 11, 5, 9, 14]  # repeats "5 9 14": lookup has something to find


@pytest.fixture(scope="module")
def target():
    return as_target(tiny_model(vocab_size=32, layers=2, hidden=32, seed=0), None)


def hybrids(target, pair):
    return {"mtp": HybridDrafter(MTPDrafter.random_init(target, layers=1, seed=0), min_match=2),
            "draft-model": HybridDrafter(DraftModelDrafter(pair[1]), min_match=2)}


@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("fallback", ["mtp", "draft-model"])
def test_greedy_equals_plain(target, pair, fallback, k):
    t = target if fallback == "mtp" else as_target(pair[0], None)
    drafter = hybrids(target, pair)[fallback]
    plain = SpeculativeDecoder(t, None).generate(PROMPT, max_new_tokens=40)
    out = SpeculativeDecoder(t, drafter, k=k).generate(PROMPT, max_new_tokens=40)
    assert out.token_ids == plain.token_ids
    assert {"ngram", "fallback"} <= set(drafter.used), drafter.used  # both sources drafted: neither path is vacuous
    assert len(drafter.used) == len(out.rounds)


@pytest.mark.parametrize("fallback", ["mtp", "draft-model"])
def test_kv_invariants(target, pair, fallback):
    t = target if fallback == "mtp" else as_target(pair[0], None)
    drafter = hybrids(target, pair)[fallback]
    out = SpeculativeDecoder(t, drafter, k=4).generate(PROMPT, max_new_tokens=40)
    for r in out.rounds:
        assert r.target_kv.after_rollback == r.context_len + len(r.emitted) - 1
        if r.drafter_kv is not None:  # a fallback with its own cache never keeps a rejected token
            assert r.drafter_kv.after_rollback <= r.context_len + len(r.emitted) - 1


def test_lookup_wins_when_a_match_exists(target):
    drafter = HybridDrafter(MTPDrafter.random_init(target, layers=1, seed=0), min_match=3)
    out = SpeculativeDecoder(target, drafter, k=4).generate(PROMPT, max_new_tokens=10)
    assert drafter.used[0] == "ngram" and out.rounds[0].drafted[:1] == [30]  # what followed "5 9 14" before


def test_sampled_run_is_seeded(target):
    drafter = HybridDrafter(MTPDrafter.random_init(target, layers=1, seed=0), min_match=2)
    a = SpeculativeDecoder(target, drafter, k=3).generate(PROMPT, max_new_tokens=24, temperature=1.0, seed=3)
    b = SpeculativeDecoder(target, drafter, k=3).generate(PROMPT, max_new_tokens=24, temperature=1.0, seed=3)
    assert a.token_ids == b.token_ids and a.stats.counts.draft_tokens > 0


@pytest.mark.parametrize("lengths", [(8, 1), ("auto", "auto")])
def test_each_source_drafts_its_own_length(target, lengths):
    """Lookup drafts up to lookup_k, the model model_k; every round's reason names the source; greedy = plain."""
    lookup_k, model_k = lengths
    drafter = HybridDrafter(MTPDrafter.random_init(target, layers=1, seed=0), min_match=2, lookup_k=lookup_k,
                            model_k=model_k, verify_cost={1: 1.02, 2: 1.04, 4: 1.1, 8: 1.3})
    plain = SpeculativeDecoder(target, None).generate(PROMPT, max_new_tokens=40)
    out = SpeculativeDecoder(target, drafter, k=8).generate(PROMPT, max_new_tokens=40)
    assert out.token_ids == plain.token_ids
    for source, r in zip(drafter.used, out.rounds, strict=True):
        name = "prompt lookup" if source == "ngram" else drafter.fallback.name
        assert r.draft_reason.startswith(f"hybrid: {name} drafted"), r.draft_reason
        if lengths == (8, 1) and source == "fallback":
            assert len(r.drafted) <= 1
    assert {"ngram", "fallback"} <= set(drafter.used)
    if lengths == (8, 1):  # the lookup drafted longer than the model ever may
        assert max(len(r.drafted) for s, r in zip(drafter.used, out.rounds, strict=True) if s == "ngram") > 1
    else:
        assert any("cost model" in r.draft_reason for r in out.rounds)


def test_make_drafter_hybrid_spec():
    d = make_drafter("hybrid:4")
    assert isinstance(d, HybridDrafter) and d.min_match == 4 and isinstance(d.fallback, MTPDrafter)
    with pytest.raises(ValueError, match="min_match"):
        HybridDrafter(d.fallback, min_match=0)
    split = make_drafter("hybrid:3:auto:2")
    assert split.min_match == 3 and split.lengths["fallback"] == 2 and "lookup k auto" in split.name
    with pytest.raises(ValueError, match="lookup_k:model_k"):
        make_drafter("hybrid:3:auto")
    with pytest.raises(ValueError, match="model_k"):
        HybridDrafter(d.fallback, model_k=-1)


def test_specs_take_an_mtp_head_from_a_file(tmp_path):
    """mtp:FILE and hybrid:...:FILE load a head train-mtp wrote (a candidate next to the shipped one)."""
    shipped = make_drafter("mtp")
    path = tmp_path / "candidate.safetensors"
    shipped.save(path)
    mtp = make_drafter(f"mtp:{path}")
    assert torch.equal(mtp.head.vocab_ids, shipped.head.vocab_ids)
    hybrid = make_drafter(f"hybrid:3:auto:2:{path}")
    assert isinstance(hybrid.fallback, MTPDrafter) and hybrid.lengths["fallback"] == 2


def test_every_drafter_is_exported():
    import labkit.drafters as D

    for name in ("DraftModelDrafter", "EarlyExitDrafter", "NGramDrafter", "SyntheticDrafter", "HybridDrafter",
                 "MTPDrafter", "Gemma4AssistantDrafter", "ArgmaxDrafter"):
        assert isinstance(getattr(D, name), type), name
        assert name in D.__all__
    assert torch  # keep the import used by parametrised helpers
