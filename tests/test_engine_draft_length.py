"""Draft-length policies: any policy keeps greedy output equal to plain greedy; every record says why it drafted
as many tokens as it did; each policy follows its rule (issue 8, item 3)."""

import pytest
import torch

from labkit import SpeculativeDecoder
from labkit.core.draft_length import (
    DEFAULT_VERIFY_SLOPE,
    ConfidenceStop,
    CostModel,
    FixedK,
    Heuristic,
    StopRule,
    SurvivalStop,
    as_policy,
)
from labkit.core.records import KVTrace, RoundRecord
from labkit.core.verify_cost import VerifyCost
from labkit.drafters import DraftModelDrafter, NGramDrafter, SyntheticDrafter
from labkit.drafters.mtp.drafter import MTPDrafter
from labkit.models.load import as_target

PROMPT = [1, 5, 9, 14, 3, 7, 22, 5, 9, 14, 30, 2, 11]

POLICIES = {
    "fixed": lambda: FixedK(3),
    "confidence": lambda: ConfidenceStop(0.6, k_max=6),
    "heuristic": lambda: Heuristic(2, k_max=8),
    "cost": lambda: CostModel(k_max=6, verify_cost={1: 1.05, 2: 1.1, 4: 1.3, 8: 2.0}, draft_cost=0.1),
    "auto": lambda: "auto",
    "survival": lambda: SurvivalStop(k_max=6, verify_cost={1: 1.05, 2: 1.1, 4: 1.3, 8: 2.0}, draft_cost=0.1),
}


def make_drafter(name, pair):
    target, draft = pair
    return {"draft-model": lambda: DraftModelDrafter(draft), "ngram": lambda: NGramDrafter(2),
            "synthetic": lambda: SyntheticDrafter(0.7),
            "mtp": lambda: MTPDrafter.random_init(as_target(target), layers=1, seed=0)}[name]()


@pytest.fixture(scope="module")
def reference(pair):
    return SpeculativeDecoder(pair[0], None).generate(PROMPT, max_new_tokens=30).token_ids


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("drafter", ["draft-model", "ngram", "synthetic", "mtp"])
def test_greedy_equals_plain_with_any_policy(pair, reference, policy, drafter):
    out = SpeculativeDecoder(pair[0], make_drafter(drafter, pair), k=POLICIES[policy]()).generate(
        PROMPT, max_new_tokens=30)
    assert out.token_ids == reference
    assert all(r.draft_reason and len(r.drafted) <= r.k_requested for r in out.rounds)
    if drafter != "ngram":  # the lookup finds nothing on some rounds; the others always draft when asked
        assert sum(len(r.drafted) for r in out.rounds) > 0


def test_int_k_is_fixed_k(pair):
    a = SpeculativeDecoder(pair[0], DraftModelDrafter(pair[1]), k=3).generate(PROMPT, 30, temperature=0.8, seed=2)
    b = SpeculativeDecoder(pair[0], DraftModelDrafter(pair[1]), k=FixedK(3)).generate(PROMPT, 30, temperature=0.8,
                                                                                     seed=2)
    assert a.token_ids == b.token_ids and [r.drafted for r in a.rounds] == [r.drafted for r in b.rounds]
    assert a.config["k"] == 3
    for r in a.rounds:
        assert r.draft_reason.startswith("fixed k")
        assert r.k_requested == min(3, 30 - r.context_len + len(PROMPT) - 1) == len(r.drafted)


def test_generate_k_overrides_the_policy(pair):
    dec = SpeculativeDecoder(pair[0], DraftModelDrafter(pair[1]), k=2)
    out = dec.generate(PROMPT, 20, k=Heuristic(3, 5))
    assert out.rounds[0].k_requested == 3 and out.rounds[0].draft_reason == "heuristic: k 3 (start)"
    assert dec.generate(PROMPT, 20).rounds[0].k_requested == 2


def test_confidence_stop_stops_where_q_falls(pair):
    threshold = 0.6
    out = SpeculativeDecoder(pair[0], DraftModelDrafter(pair[1]), k=ConfidenceStop(threshold, 5)).generate(
        PROMPT, max_new_tokens=60)
    stopped = 0
    for r in out.rounds:
        if r.draft_reason.startswith("confidence"):  # stopped at the first token below the threshold, kept it
            stopped += 1
            assert r.q[-1] < threshold and all(q >= threshold for q in r.q[:-1])
            assert r.draft_reason == f"confidence {r.q[-1]:.2f} < {threshold:g} at position {len(r.drafted)}"
        elif r.k_requested == 5:
            assert len(r.drafted) == 5 and all(q >= threshold for q in r.q)
    assert 0 < stopped < len(out.rounds), "the threshold should stop some rounds and not others"


def test_confidence_extremes(pair):
    dec = SpeculativeDecoder(pair[0], DraftModelDrafter(pair[1]))
    never = dec.generate(PROMPT, 30, k=ConfidenceStop(0.0, 4))
    always = dec.generate(PROMPT, 30, k=ConfidenceStop(1.0, 4))
    assert all(len(r.drafted) == r.k_requested for r in never.rounds)
    assert all(len(r.drafted) == 1 for r in always.rounds if r.k_requested)
    assert never.token_ids == always.token_ids


def test_stop_rule_is_the_marginal_rate_condition():
    """By hand: V(k) = 1 + 0.1 k, c = 0.05. After token 1 with q 0.9: E = 1.9 tokens for 1.15 forwards (1.65 per
    forward); one more adds 0.81 for 0.15 -> 5.4 per forward: go on. After a token with q 0.3 (S = 0.27): E = 2.17
    for 1.3 forwards (1.67), one more adds 0.081 for 0.15 (0.54): stop."""
    rule = StopRule(VerifyCost({1: 1.1, 2: 1.2}), 0.05)  # a line: 1 + 0.1 k at every k
    assert rule(1, 0.9, 0.9) is False
    assert rule(2, 0.3, 0.27) is True
    assert "below the round's 1.67 tokens per forward" in rule.why(2, 0.3)
    # a free verify and free drafting: a sure drafter never stops
    free = StopRule(VerifyCost.free(), 0.0)
    assert not any(free(j, 1.0, 1.0) for j in range(1, 10))


def test_survival_stop_drafts_long_when_sure_and_stops_where_q_falls(pair):
    curve = {1: 1.02, 2: 1.04, 4: 1.08, 8: 1.3}
    sure = SpeculativeDecoder(pair[0], SyntheticDrafter(1.0), k=SurvivalStop(6, curve, 0.0)).generate(PROMPT, 30)
    assert [len(r.drafted) for r in sure.rounds[:3]] == [6, 6, 6]  # q = 1: every extra token pays
    out = SpeculativeDecoder(pair[0], DraftModelDrafter(pair[1]), k=SurvivalStop(6, curve, 0.1)).generate(
        PROMPT, max_new_tokens=60)
    stopped = [r for r in out.rounds if r.draft_reason.startswith("survival: after token")]
    assert 0 < len(stopped) < len(out.rounds), [r.draft_reason for r in out.rounds]
    for r in stopped:  # the rule stopped at the token it names, with that token's q
        assert r.draft_reason.startswith(f"survival: after token {len(r.drafted)} (q {r.q[-1]:.2f})")


def test_heuristic_schedule(pair):
    perfect = SpeculativeDecoder(pair[0], SyntheticDrafter(1.0), k=Heuristic(1, 6)).generate(PROMPT, 40)
    assert [r.k_requested for r in perfect.rounds[:4]] == [1, 3, 5, 6]
    assert perfect.rounds[1].draft_reason == "heuristic: k 1 -> 3 after full accept"
    hopeless = SpeculativeDecoder(pair[0], SyntheticDrafter(0.0), k=Heuristic(4, 6)).generate(PROMPT, 12)
    assert [r.k_requested for r in hopeless.rounds[:5]] == [4, 3, 2, 1, 1]
    assert hopeless.rounds[1].draft_reason == "heuristic: k 4 -> 3 after a rejection"


def record(drafted: int, accepted: int, draft_s: float = 0.01, verify_s: float = 0.1) -> RoundRecord:
    kv = KVTrace(0, 0, 0, 0)
    return RoundRecord(0, 1, [0] * drafted, [], [], [], [], accepted, None, 0, "bonus", [0], kv, None, draft_s,
                       verify_s, k_requested=drafted)


def test_cost_model_follows_the_cost_curve():
    flat = CostModel(k_max=8, verify_cost={1: 1.0, 8: 1.0}, draft_cost=0.01)
    steep = CostModel(k_max=8, verify_cost={1: 2.0, 2: 3.0, 4: 5.0, 8: 9.0}, draft_cost=0.01)
    for policy in (flat, steep):
        for _ in range(20):
            policy.observe(record(4, 4))  # every draft accepted
    assert flat.plan().k == 8  # free verify, cheap drafts, acceptance ~1: draft all you may
    plan = steep.plan()  # a verify that costs as much as k+1 plain steps never pays
    assert plan.k == 0 and "does not pay" in plan.reason


def test_cost_model_learns_acceptance():
    policy = CostModel(k_max=8, verify_cost={1: 1.1, 2: 1.15, 4: 1.3, 8: 1.7}, draft_cost=0.05)
    for _ in range(30):
        policy.observe(record(4, 4))
    high = policy.plan().k
    for _ in range(60):
        policy.observe(record(4, 0))  # every first draft rejected
    low = policy.plan().k
    assert high >= 4 and low < high
    assert policy.acceptance()[0] < 0.1


def test_cost_model_probes_after_k0():
    policy = CostModel(k_max=4, verify_cost={1: 3.0, 4: 6.0}, draft_cost=1.0, probe_every=3)
    plans = [policy.plan() for _ in range(6)]
    assert [p.k for p in plans] == [0, 0, 1, 0, 0, 1]
    assert plans[2].reason.startswith("cost model: probe k=1")


def test_cost_model_verify_curve_forms():
    as_dict = CostModel(verify_cost={1: 1.2, 4: 1.8})
    as_list = CostModel(verify_cost=[1.0, 1.2, 1.4, 1.6, 1.8])
    for k, want in [(0, 1.0), (1, 1.2), (2, 1.4), (4, 1.8), (6, 2.2)]:
        assert as_dict.verify_cost.at(k) == pytest.approx(want)
        assert as_list.verify_cost.at(k) == pytest.approx(want)
    default = CostModel()
    assert default.verify_cost.at(4) == pytest.approx(1 + 4 * DEFAULT_VERIFY_SLOPE)
    assert "assumed verify curve" in default.plan().reason


def test_cost_model_measures_draft_cost_from_timings():
    policy = CostModel(k_max=4, verify_cost={1: 1.0, 4: 1.0})
    for _ in range(50):
        policy.observe(record(4, 2, draft_s=0.04, verify_s=0.1))  # 4 draft steps of 10 ms, 100 ms verify
    assert policy.c == pytest.approx(0.1, rel=0.01)


def test_auto_in_the_config(pair):
    out = SpeculativeDecoder(pair[0], DraftModelDrafter(pair[1]), k="auto").generate(PROMPT, 12)
    assert out.config["k"].startswith("CostModel(")
    assert out.rounds[0].draft_reason.startswith("cost model:")


@pytest.mark.parametrize(("k", "match"), [
    ("fast", r"k: must be an integer in 0\.\.32 .*'auto' or a draft-length policy"),
    (ConfidenceStop, r"k: must be"),
])
def test_bad_policy(pair, k, match):
    with pytest.raises(ValueError, match=match):
        SpeculativeDecoder(pair[0], NGramDrafter(2), k=k)


@pytest.mark.parametrize(("make", "match"), [
    (lambda: ConfidenceStop(1.5), "threshold: "),
    (lambda: ConfidenceStop(0.5, k_max=0), "k_max: "),
    (lambda: Heuristic(9, k_max=4), "k_start: must be an integer in 1..4"),
    (lambda: CostModel(verify_cost={1: -1.0}), "verify_cost: "),
    (lambda: CostModel(draft_cost=-0.1), "draft_cost: "),
    (lambda: FixedK(99), "k: must be an integer in 0..32"),
])
def test_bad_policy_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_as_policy():
    assert isinstance(as_policy(3), FixedK) and isinstance(as_policy("auto"), CostModel)
    h = Heuristic()
    assert as_policy(h) is h


def test_sampling_with_a_policy_is_seeded(pair):
    dec = SpeculativeDecoder(pair[0], DraftModelDrafter(pair[1]), k=ConfidenceStop(0.3, 4))
    a, b = (dec.generate(PROMPT, 20, temperature=1.0, seed=5) for _ in range(2))
    assert a.token_ids == b.token_ids and [r.u for r in a.rounds] == [r.u for r in b.rounds]
    assert torch.tensor([len(r.drafted) for r in a.rounds]).max() <= 4


def build_confidence_stop():
    from test_lossless import draft_model, target_model

    return SpeculativeDecoder(target_model(), DraftModelDrafter(draft_model()), k=ConfidenceStop(0.3, k_max=2))


def test_confidence_stop_case_is_not_vacuous():
    """The χ² case below: its first round stops at position 1, at position 2, or drafts both, by seed."""
    from test_lossless import PROMPT as P

    dec = build_confidence_stop()
    firsts = [dec.generate(P, 3, temperature=1.0, seed=s).rounds[0] for s in range(60)]
    assert {len(r.drafted) for r in firsts if r.draft_reason.startswith("confidence")} == {1, 2}
    assert any(not r.draft_reason.startswith("confidence") for r in firsts)


@pytest.mark.slow
def test_confidence_stop_is_lossless():
    """Stopping on the drafter's own q sets the draft length from the drafter's side only: still lossless."""
    from test_lossless import PROMPT as P
    from test_lossless import target_model

    from labkit.core.sampling import SamplingConfig
    from lossless import draw_tokens, exact_tokens, is_lossless

    cfg = SamplingConfig(1.0)
    with torch.inference_mode():
        exact = exact_tokens(target_model(), P, cfg)
    assert is_lossless(draw_tokens(build_confidence_stop, P, cfg), exact)
