"""Every quantity is defined once (labkit.core.metrics) and every path a user can reach reports the same value."""

import json

import pytest
import torch

from labkit.core import metrics
from labkit.core.records import GenerationResult, KVTrace, RoundRecord
from labkit.engines.base import EngineRun
from labkit.measure.bench import Method, run_record, summarize
from labkit.measure.sweep import sweep_point

KV = KVTrace(0, 0, 0, 0)


def rnd(i, drafted, accepted, emitted, draft_s=0.01, verify_s=0.05):
    n = len(drafted)
    return RoundRecord(index=i, context_len=10 + i, drafted=drafted, p=[1.0] * n, q=[1.0] * n, u=[], margin=[0.0] * n,
                       accepted=accepted, rejected_at=accepted if accepted < n else None, next_token=7,
                       next_kind="plain" if not n else "bonus" if accepted == n else "replacement", emitted=emitted,
                       target_kv=KV, drafter_kv=None, draft_seconds=draft_s if n else 0.0, verify_seconds=verify_s,
                       k_requested=4)


# The worked example of docs/metrics.md: 5 rounds at k = 4, one of them without a draft (no n-gram match).
ROUNDS = [rnd(0, [1, 2, 3, 4], 4, [1, 2, 3, 4, 5]),  # all 4 accepted + bonus
          rnd(1, [1, 2, 3, 4], 1, [1, 9]),  # position 2 rejected
          rnd(2, [], 0, [9], verify_s=0.04),  # nothing drafted: a plain step
          rnd(3, [1, 2, 3, 4], 0, [9]),  # position 1 rejected
          rnd(4, [1, 2, 3, 4], 2, [1, 2, 9])]  # position 3 rejected
SPEC = GenerationResult([5, 6], [t for r in ROUNDS for t in r.emitted], None, ROUNDS, seconds=0.40,
                        prefill_seconds=0.05)
PLAIN = GenerationResult([5, 6], [9] * 12, None, [rnd(i, [], 0, [9], verify_s=0.04) for i in range(12)],
                         seconds=0.55, prefill_seconds=0.05)

EXPECTED = {  # by hand from the rounds above
    "draft_acceptance_rate": 7 / 16,  # accepted 4 + 1 + 0 + 2 of 16 drafted
    "mean_acceptance_length": 1 + 7 / 4,  # 4 drafts (verify steps with a draft)
    "acceptance_by_position": [3 / 4, 2 / 4, 1 / 4, 1 / 4],
    "conditional_acceptance_by_position": [3 / 4, 2 / 3, 1 / 2, 1 / 1],
    "tokens_per_verify": 12 / 5,
    "mean_draft_length": 16 / 5,
    "alpha": 7 / (7 + 3),  # 3 rounds rejected something
    "draft_cost": (0.04 / 16) / (0.24 / 5),
    "decode_tok_s": 12 / (0.04 + 0.24),
    "end_to_end_tok_s": 12 / 0.40,
}


def test_the_worked_example():
    m = metrics.metrics(SPEC)
    for name, want in EXPECTED.items():
        assert getattr(m, name) == pytest.approx(want), name


def test_counts_pool_before_dividing():
    a, b = metrics.counts(ROUNDS[:2]), metrics.counts(ROUNDS[2:])
    both, whole = (a + b).as_dict(), metrics.counts(ROUNDS).as_dict()
    assert set(both) == set(whole) and all(both[k] == pytest.approx(whole[k]) for k in whole)
    # pooled, not the mean of the two halves' ratios (7 / 2 and 5 / 3 tokens per verify)
    assert metrics.tokens_per_verify(a + b) == pytest.approx(12 / 5)
    assert metrics.tokens_per_verify(a + b) != pytest.approx(
        (metrics.tokens_per_verify(a) + metrics.tokens_per_verify(b)) / 2)


def test_every_path_reports_the_same_numbers():
    stats = SPEC.stats
    row = sweep_point(4, [SPEC], [PLAIN])
    method = Method("labkit", "ngram", 4)
    recs = [run_record({"config": m.key, "category": "qa", "prompt": 0, "repeat": 0, "seconds": res.seconds,
                        "cpu_seconds": res.seconds, "tokens": res.token_ids,
                        "result": EngineRun(m.key, res.token_ids, None, metrics.counts(res), res.seconds,
                                            generation=res)}, m, torch.tensor(res.prompt_ids))
            for m, res in ((method, SPEC), (Method("labkit", "plain", 0), PLAIN),
                           (Method("transformers", "greedy", 0), PLAIN))]
    bench = next(r for r in summarize(recs, [Method("transformers", "greedy", 0), Method("labkit", "plain", 0),
                                             method], ["qa"]) if r.method == "ngram" and r.category == "all")
    as_json = json.loads(json.dumps(stats.as_dict()))  # what `labkit generate --json` prints under "stats"
    for name in ("draft_acceptance_rate", "mean_acceptance_length", "acceptance_by_position", "tokens_per_verify",
                 "mean_draft_length", "alpha", "draft_cost"):
        want = EXPECTED[name]
        assert getattr(stats, name) == pytest.approx(want), f"Stats.{name}"
        assert row[name] == pytest.approx(want), f"sweep row {name}"
        assert getattr(bench, name) == pytest.approx(want), f"bench row {name}"
        assert as_json[name] == pytest.approx(want), f"--json {name}"
    assert bench.conditional_acceptance_by_position == pytest.approx(EXPECTED["conditional_acceptance_by_position"])
    # speeds: the sweep is decode tok/s, the bench end-to-end tok/s (one timing for every engine), both named so
    assert row["decode_tok_s"] == pytest.approx(EXPECTED["decode_tok_s"]) == stats.decode_tok_s
    assert bench.end_to_end_tok_s == pytest.approx(EXPECTED["end_to_end_tok_s"]) == stats.end_to_end_tok_s
    assert row["speedup"] == pytest.approx(EXPECTED["decode_tok_s"] / (12 / 0.48))


def test_engine_counters_map_to_the_same_quantities():
    """vLLM / llama.cpp counters (drafts, draft tokens, accepted, accepted per position) give the same shared
    quantities as labkit's own rounds."""
    c = metrics.counts(SPEC)
    served = metrics.from_engine_counters(drafts=c.drafts, draft_tokens=c.draft_tokens, accepted=c.accepted,
                                          accepted_per_pos=c.accepted_per_pos)
    for f in (metrics.draft_acceptance_rate, metrics.mean_acceptance_length, metrics.acceptance_by_position):
        assert f(served) == pytest.approx(f(c))


def test_nothing_drafted_is_none_not_zero():
    m = metrics.metrics(PLAIN)
    assert m.draft_acceptance_rate is None and m.mean_acceptance_length is None and m.alpha is None
    assert m.tokens_per_verify == 1.0 and m.acceptance_by_position == []
    assert "nothing drafted" in m.summary()


def test_the_glossary_table_matches_the_values():
    names = [name for name, _, _ in metrics.table(SPEC.stats)]
    assert names == list(metrics.GLOSSARY)
    cells = {name: value for name, value, _ in metrics.table(SPEC.stats)}
    assert cells["alpha"] == f"{7 / 10:.3f}" and cells["tokens per verify"] == "2.40"
