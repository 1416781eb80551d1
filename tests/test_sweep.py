"""Fixed k against draft-length policies (issue 8, item 3): run_sweep takes policies next to ints, the live
PolicySweep runs to the end or stops, and explain_policy's sentence follows the numbers in each case."""

import threading
import time

import pytest

from labkit import SpeculativeDecoder, tiny_pair
from labkit.core.draft_length import ConfidenceStop, CostModel, FixedK, Heuristic
from labkit.drafters import DraftModelDrafter, NGramDrafter
from labkit.lab import figures, widgets
from labkit.lab.explain import explain_policy
from labkit.measure.sweep import run_sweep

PROMPTS = [[1, 5, 9, 14, 3, 7, 22, 5, 9, 14, 30, 2, 11], [4, 4, 8, 15, 16, 23, 4, 8, 15]]


@pytest.fixture(scope="module")
def pair(one_thread):
    return tiny_pair(vocab_size=32, seed=0)


# ------------------------------------------------------------------------------------------------ run_sweep


def test_run_sweep_takes_policies_next_to_ints(pair):
    target, draft = pair
    heuristic = Heuristic(k_start=2, k_max=6)
    rows = run_sweep(target, {"plain": None, "dm": DraftModelDrafter(draft)}, [2, heuristic, FixedK(3), "auto"],
                     PROMPTS, max_new_tokens=20, warmup=False)
    by = {(r["drafter"], r["k"], r["policy"]): r for r in rows}
    assert list(by) == [("plain", 0, None), ("dm", 2, None), ("dm", 6, repr(heuristic)), ("dm", 3, None),
                        ("dm", 8, "CostModel(k_max=8)")]
    plain = by["plain", 0, None]["results"]
    for (_, k, _), r in by.items():
        assert len(r["results"]) == len(PROMPTS)
        assert [x.token_ids for x in r["results"]] == [x.token_ids for x in plain]  # greedy, fp32: any k is lossless
        if k:
            assert r["alpha"] is not None and r["draft_cost"] is not None and r["mean_draft_length"] > 0
            rounds = [x for res in r["results"] for x in res.rounds]
            assert r["mean_draft_length"] == pytest.approx(sum(len(x.drafted) for x in rounds) / len(rounds))
    asked = [x.k_requested for x in by["dm", 6, repr(heuristic)]["results"][0].rounds]
    assert asked[0] == 2 and len(set(asked)) > 1, asked  # the policy moved
    fixed = by["dm", 2, None]["results"][0].rounds
    assert fixed[0].k_requested == 2 and all(x.k_requested <= 2 and x.draft_reason.startswith("fixed k")
                                             for x in fixed)  # fewer only near max_new_tokens


def test_run_sweep_keeps_two_policies_with_one_repr(pair):
    target, draft = pair
    a, b = CostModel(4, verify_cost={1: 1.1, 4: 1.3}), CostModel(4, verify_cost={1: 2.0, 4: 5.0})
    rows = run_sweep(target, {"dm": DraftModelDrafter(draft)}, [a, b], PROMPTS[:1], max_new_tokens=8, warmup=False)
    assert len(rows) == 2 and all(r["policy"] == repr(a) for r in rows)


def test_a_drafter_with_its_own_ks_runs_side_by_side(pair):
    """own_ks: one drafter at other draft lengths than the rest, in the same interleaved run, against one plain."""
    target, draft = pair
    rows = run_sweep(target, {"plain": None, "a": DraftModelDrafter(draft), "b": DraftModelDrafter(draft)}, [2],
                     PROMPTS, max_new_tokens=12, warmup=False, own_ks={"b": [1, 5]})
    assert [(r["drafter"], r["k"]) for r in rows] == [("plain", 0), ("a", 2), ("b", 1), ("b", 5)]
    assert all(x.k_requested <= 5 for x in rows[3]["results"][0].rounds)
    assert max(x.k_requested for x in rows[3]["results"][0].rounds) == 5
    with pytest.raises(ValueError, match="no drafter named c"):
        run_sweep(target, {"a": DraftModelDrafter(draft)}, [2], PROMPTS, own_ks={"c": [3]})


def test_run_sweep_names_a_bad_k(pair):
    with pytest.raises(ValueError, match="k: must be"):
        run_sweep(pair[0], {"dm": DraftModelDrafter(pair[1])}, ["fast"], PROMPTS, max_new_tokens=4)


# ------------------------------------------------------------------------------------------------ the widget


def test_policy_sweep_runs_to_completion(pair):
    target, draft = pair
    configs = {"fixed k = 3": 3, "heuristic": Heuristic(2, k_max=6), "confidence": ConfidenceStop(0.5, k_max=6)}
    run = widgets.PolicySweep(target, DraftModelDrafter(draft), configs, PROMPTS, max_new_tokens=16).run()
    run.wait(120)
    assert not run.stopped and run.error is None and "done" in run.label.value
    assert [r["config"] for r in run.rows] == ["plain", *configs]
    assert run.rows[0]["speedup"] == pytest.approx(1.0) and run.rows[0]["policy"] is None
    assert [r["policy"] is None for r in run.rows[1:]] == [True, False, False]
    assert all(len(run.results[label]) == len(PROMPTS) for label in configs)
    speed, ks = run.fig_speed.data, run.fig_k.data
    assert list(speed[0].x) == list(configs) and len(speed[0].y) == 3
    assert len(ks) == 2 * len(configs)  # drafted and asked, per configuration
    first = run.first_prompt()["heuristic"]
    assert list(ks[2].y) == [len(r.drafted) for r in first.rounds] and list(ks[3].y) == [r.k_requested
                                                                                         for r in first.rounds]
    static = figures.policy_speedups(run.rows)
    assert list(static.data[0].y) == [r["speedup"] for r in run.rows[1:]]
    assert "mean draft length" in static.data[0].text[0]


def test_policy_sweep_stops(pair):
    target, _ = pair
    gate = threading.Event()

    class Slow(NGramDrafter):
        def propose(self, ctx, k, sampler):
            gate.wait(0.05)
            return super().propose(ctx, k, sampler)

    configs = {"k = 2": 2, "k = 4": 4, "heuristic": Heuristic(), "auto": "auto"}
    run = widgets.PolicySweep(target, Slow(2), configs, PROMPTS, max_new_tokens=64).run()
    time.sleep(0.3)
    run.stop_button.click()
    run.wait(60)
    assert run.stopped and not run.running and len(run.rows) < 1 + len(configs)


def test_policy_sweep_rejects_a_config_that_drafts_nothing(pair):
    with pytest.raises(ValueError, match="draft nothing"):
        widgets.PolicySweep(pair[0], NGramDrafter(2), {"zero": 0}, PROMPTS)
    with pytest.raises(ValueError, match="baseline's label"):
        widgets.PolicySweep(pair[0], NGramDrafter(2), {"plain": 2}, PROMPTS)
    with pytest.raises(ValueError, match="at least one"):
        widgets.PolicySweep(pair[0], NGramDrafter(2), {}, PROMPTS)


# ------------------------------------------------------------------------------------------------ the sentence


def row(config, k, speedup, tpv, mean_draft_length, policy=None, decode_tok_s=None, alpha=0.6):
    # decode_tok_s defaults to speedup x 100 (plain at 100 tok/s): ms per round = 1000 * tpv / decode_tok_s
    return {"config": config, "k": k, "policy": policy, "speedup": speedup, "tokens_per_verify": tpv,
            "mean_draft_length": mean_draft_length, "alpha": alpha, "decode_tok_s": decode_tok_s or 100 * speedup}


PLAIN = row("plain", 0, 1.0, 1.0, 0.0)


def test_policy_wins_says_by_how_much_against_the_best_fixed_k():
    rows = [PLAIN, row("k = 2", 2, 1.2, 1.8, 2.0), row("k = 4", 4, 1.4, 2.2, 4.0),
            row("cost model", 8, 1.6, 2.5, 3.1, "CostModel(k_max=8)")]
    text = explain_policy(rows)
    assert text.startswith("The fastest configuration was cost model, at 1.60x plain decoding, 14% faster than the "
                           "best fixed k = 4 (1.40x)"), text
    assert "3.1 tokens a round on average against 4.0" in text and "Why" not in text


def test_about_even_without_repeats_says_the_spread_was_not_measured():
    rows = [PLAIN, row("k = 4", 4, 1.40, 2.2, 4.0), row("heuristic", 16, 1.42, 2.3, 5.0, "Heuristic()")]
    text = explain_policy(rows)
    assert "about even with the best fixed k = 4 (1.40x): +1%, under 5%, a gap this run did not measure" in text, text
    assert "noise" not in text and "Why" not in text


def test_about_even_is_judged_against_the_measured_spread():
    fixed, policy = row("k = 4", 4, 1.40, 2.2, 4.0), row("heuristic", 16, 1.52, 2.3, 5.0, "Heuristic()")
    quiet = explain_policy([PLAIN, {**fixed, "speed_spread": 0.02}, {**policy, "speed_spread": 0.03}])
    assert "9% faster than the best fixed k" in quiet, quiet  # 9% beats a 3% spread
    noisy = explain_policy([PLAIN, {**fixed, "speed_spread": 0.12}, {**policy, "speed_spread": 0.04}])
    assert "+9%, within the 12% spread its repeats showed here" in noisy, noisy


def test_policy_lost_by_drafting_shorter():
    rows = [PLAIN, row("k = 4", 4, 1.5, 2.4, 4.0), row("confidence", 8, 1.2, 1.6, 1.5, "ConfidenceStop()")]
    text = explain_policy(rows)
    assert "the best fixed k beat every policy; the best policy, confidence, reached 1.20x, 20% slower" in text
    assert "drafted shorter on average (1.5 tokens a round against 4.0)" in text, text
    # ms per round: 1000 * 1.6 / 120 = 13.3 against 1000 * 2.4 / 150 = 16.0: cheaper rounds, fewer tokens
    assert "at 13.3 ms a round against 16.0 ms" in text
    assert "lost on fewer tokens per round, which its cheaper rounds did not make up for" in text


def test_policy_lost_by_drafting_longer_for_dearer_rounds():
    rows = [PLAIN, row("k = 2", 2, 1.5, 1.8, 2.0, alpha=0.5),
            row("heuristic", 16, 1.2, 2.0, 6.0, "Heuristic()", alpha=0.3)]
    text = explain_policy(rows)
    assert "drafted longer on average (6.0 tokens a round against 2.0)" in text, text
    assert "alpha 0.30 against 0.50" in text
    assert "lost on dearer rounds, which its extra tokens per round did not pay for" in text


def test_policy_lost_on_acceptance_at_the_same_length():
    rows = [PLAIN, row("k = 4", 4, 1.5, 2.4, 4.0, decode_tok_s=150),
            row("cost model", 4, 1.2, 1.9, 3.8, "CostModel(k_max=4)", decode_tok_s=120, alpha=0.4)]
    text = explain_policy(rows)
    assert "drafted about as many tokens a round (3.8 against 4.0)" in text, text
    # 1000 * 1.9 / 120 = 15.8 ms against 16.0 ms: no dearer rounds, fewer tokens
    assert "lost on fewer tokens per round" in text and "dearer" not in text


def test_policy_lost_on_its_own_cost_per_round():
    rows = [PLAIN, row("k = 4", 4, 1.5, 2.4, 4.0), row("confidence", 4, 1.2, 2.4, 4.0, "ConfidenceStop()")]
    text = explain_policy(rows)
    assert "2.40 tokens per verify against 2.40" in text and "20.0 ms a round against 16.0 ms" in text, text
    assert "lost on dearer rounds (the policy's own work per round" in text


def test_policy_sentence_needs_both_kinds_of_row():
    with pytest.raises(ValueError, match="one fixed-k row and one policy row"):
        explain_policy([PLAIN, row("k = 4", 4, 1.5, 2.4, 4.0)])


def test_policy_rows_from_a_real_sweep_make_a_sentence(pair):
    target, draft = pair
    rows = run_sweep(target, {"plain": None, "dm": DraftModelDrafter(draft)}, [3, Heuristic(2, 6)], PROMPTS[:1],
                     max_new_tokens=12, warmup=False)
    text = explain_policy(rows)
    # which branch speaks depends on timing; every branch names the fixed k (as the fastest or as the reference)
    assert text.startswith("The fastest configuration was ") and "k = 3" in text
    # the engine's own check that greedy stays plain greedy under the policy used here
    assert SpeculativeDecoder(target, DraftModelDrafter(draft), k=Heuristic(2, 6)).generate(
        PROMPTS[0], 12).token_ids == rows[0]["results"][0].token_ids
