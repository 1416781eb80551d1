"""labkit bench on tiny random models: files, rows, ratios, theory curve. No timing assertions (noisy machines)."""

import csv
import json
import math
import statistics

import pytest

from labkit.core import metrics
from labkit.core.verify_cost import VerifyCost
from labkit.measure import machine, theory
from labkit.measure.bench import (
    HF_GREEDY,
    LABKIT_PLAIN,
    Method,
    Row,
    RunRecord,
    add_roofline,
    quick_settings,
    run_bench,
    set_threads,
    summarize,
    theory_curves,
)
from labkit.measure.report import CSV_COLUMNS, format_table

CATS = ("code", "qa")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    s = quick_settings(categories=CATS, ks=(0, 2, 3), drafters=("ngram", "draft-model", "bogus"))
    return run_bench(s, out), out


def _keys(rows):
    return {(r["engine"], r["method"], r["k"], r["policy"], r["category"]) for r in rows}


def test_every_configuration_has_a_row_per_category_and_overall(bench):
    result, _ = bench
    expected = {("transformers", "greedy", 0, ""), ("labkit", "plain", 0, "")}
    expected |= {("labkit", d, k, "") for d in ("ngram", "draft-model") for k in (2, 3)}
    expected |= {("labkit", d, 3, "auto") for d in ("ngram", "draft-model")}  # dynamic k, at most the largest k
    expected |= {("transformers", m, k, "") for m in ("prompt-lookup", "early-exit", "assistant") for k in (2, 3)}
    assert _keys(result["rows"]) == {(*e, c) for e in expected for c in (*CATS, "all")}
    assert "labkit/bogus" in result["skipped"]  # an unknown drafter is reported, the rest still runs


def test_files_written_with_expected_rows_and_columns(bench):
    result, out = bench
    data = json.loads((out / "bench.json").read_text())
    assert len(data["rows"]) == len(result["rows"])
    assert data["meta"]["baseline"] == HF_GREEDY.key and data["meta"]["copy_gbps"] > 0
    with open(out / "bench.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == len(result["rows"])
    ngram = next(r for r in rows if r["method"] == "ngram" and r["k"] == "3" and r["category"] == "all")
    assert len(ngram["acceptance_by_position"].split(";")) <= 3
    page = (out / "bench.html").read_text()
    for title in ("Speed vs k", "Acceptance by draft position", "Theory", "Roofline", "per category"):
        assert title in page
    assert "plotly" in page.lower()


def test_ratios_are_against_transformers_greedy_of_the_same_category(bench):
    rows = bench[0]["rows"]
    base = {r["category"]: r["end_to_end_tok_s"] for r in rows
            if (r["engine"], r["method"]) == ("transformers", "greedy")}
    for r in rows:
        if r["category"] != "all":
            assert r["ratio_vs_hf_greedy"] == pytest.approx(r["end_to_end_tok_s"] / base[r["category"]])
        else:
            cats = [x["ratio_vs_hf_greedy"] for x in rows if x["category"] in CATS
                    and (x["engine"], x["method"], x["k"], x["policy"]) == (r["engine"], r["method"], r["k"],
                                                                            r["policy"])]
            assert r["ratio_vs_hf_greedy"] == pytest.approx(sum(cats) / len(cats))
    assert all(r["ratio_vs_hf_greedy"] == pytest.approx(1.0) for r in rows
               if (r["engine"], r["method"]) == ("transformers", "greedy"))


def test_greedy_outputs_equal_transformers_greedy_in_fp32(bench):
    # Lossless greedy: every labkit configuration and every transformers mode emits greedy's tokens (fp32 tiny).
    for r in bench[0]["rows"]:
        assert r["same_as_hf_greedy"] == 1.0, r
        assert r["new_tokens"] == r["runs"] * 16


def test_theory_curve_matches_labkit_theory(bench):
    result = bench[0]
    curves = {c["drafter"]: c for c in result["theory"]}
    assert set(curves) == {"ngram", "draft-model"}
    for name, c in curves.items():
        mine = [r for r in result["rows"] if r["method"] == name and r["category"] == "all" and not r["policy"]]
        assert c["alpha"] == pytest.approx(statistics.median(r["alpha"] for r in mine))
        for r in mine:  # alpha is the one estimator (labkit.core.metrics.alpha), pooled over the row's runs
            runs = [x for x in result["runs"] if x["method"] == f"labkit/{name}/k={r['k']}"]
            c_pooled = metrics.counts(metrics.Counts(**{k: tuple(v) if isinstance(v, list) else v
                                                        for k, v in x["counts"].items()}) for x in runs)
            assert r["alpha"] == pytest.approx(metrics.alpha(c_pooled))
            assert r["mean_acceptance_length"] == pytest.approx(metrics.mean_acceptance_length(c_pooled))
        curve = VerifyCost.from_dict(result["meta"]["verify_cost"])
        assert [p["speedup"] for p in c["curve"]] == [
            theory.expected_speedup(c["alpha"], k, c["c"], curve.at(k)) for k in range(4)]
        assert c["best_k"] == theory.best_k(c["alpha"], c["c"], 3, VerifyCost(curve.upto(3)))[0]


def test_table_lists_every_configuration(bench):
    table = format_table(bench[0])
    assert "labkit ngram k=3" in table and "transformers prompt-lookup k=2" in table
    assert "skipped labkit/bogus" in table


def _run(m, cat, rep, seconds, tokens=10, counts=None, cpu_seconds=None):
    c = counts or metrics.Counts(new_tokens=tokens, runs=1)
    return RunRecord(method=m.key, category=cat, prompt=0, repeat=rep, seconds=seconds, cpu_seconds=cpu_seconds,
                     new_tokens=tokens, counts=c, has_rounds=counts is not None, tokens=[1] * tokens)


def test_summarize_takes_medians_over_repeats_and_pools_acceptance():
    ng = Method("labkit", "ngram", 2)
    plain = metrics.Counts(new_tokens=10, rounds=10, runs=1)
    runs = [_run(HF_GREEDY, "qa", r, s) for r, s in enumerate((1.0, 2.0, 10.0))]  # median 2 s -> 5 tok/s
    runs += [_run(LABKIT_PLAIN, "qa", r, s, counts=plain) for r, s in enumerate((0.5, 1.0, 0.4))]  # 20 tok/s
    # 4 rounds drafting 2 each: 4 of 8 accepted (3 at position 1, 1 at position 2), 3 rejections
    acc = metrics.Counts(drafts=4, draft_tokens=8, accepted=4, accepted_per_pos=(3, 1), new_tokens=8, rounds=4,
                         rejections=3, verified_per_pos=(4, 3), drafted_per_pos=(4, 4), draft_seconds=0.01,
                         verify_seconds=0.2, runs=1)
    runs += [_run(ng, "qa", r, 0.2, tokens=8, counts=acc) for r in range(3)]
    rows = {r.method: r for r in summarize(runs, [HF_GREEDY, LABKIT_PLAIN, ng], ["qa"]) if r.category == "qa"}
    assert rows["greedy"].end_to_end_tok_s == pytest.approx(5.0)
    assert rows["plain"].end_to_end_tok_s == pytest.approx(20.0)
    assert rows["plain"].ratio_vs_hf_greedy == pytest.approx(4)
    assert rows["ngram"].ratio_vs_hf_greedy == pytest.approx(8.0)
    assert rows["ngram"].mean_acceptance_length == pytest.approx(2.0)
    assert rows["ngram"].tokens_per_verify == pytest.approx(2.0)
    assert rows["ngram"].draft_acceptance_rate == pytest.approx(0.5)
    assert rows["ngram"].acceptance_by_position == pytest.approx([0.75, 0.25])
    assert rows["ngram"].conditional_acceptance_by_position == pytest.approx([0.75, 1 / 3])
    assert rows["ngram"].alpha == pytest.approx(4 / 7)
    assert rows["ngram"].draft_cost == pytest.approx((0.01 / 8) / (0.2 / 4))
    assert rows["greedy"].mean_acceptance_length is None  # transformers exposes no acceptance counts
    curve = theory_curves(summarize(runs, [HF_GREEDY, LABKIT_PLAIN, ng], ["qa"]), k_max=2)[0]
    assert curve["measured"] == [{"k": 2, "speedup": pytest.approx(2.0)}]  # 40 tok/s over labkit plain's 20


def test_roofline_columns():
    rows = [Row("labkit", "plain", 0, end_to_end_tok_s=10.0, tokens_per_verify=None),
            Row("labkit", "ngram", 4, end_to_end_tok_s=30.0, tokens_per_verify=3.0)]
    add_roofline(rows, 2_000_000_000)
    assert rows[0].weight_gbps == pytest.approx(20.0) and rows[0].target_forward_gbps == pytest.approx(20.0)
    assert rows[1].weight_gbps == pytest.approx(60.0) and rows[1].target_forward_gbps == pytest.approx(20.0)


def test_auto_threads_picks_the_faster_probe(monkeypatch):
    import torch

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    before = torch.get_num_threads()
    try:
        assert set_threads("auto", lambda: 1.0 if torch.get_num_threads() == 1 else 2.0) == 1
        assert set_threads("auto", lambda: 2.0 if torch.get_num_threads() == 1 else 1.0) == 2
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert not math.isnan(before)


def test_spec_may_carry_its_own_ks():
    from labkit.measure.bench import Workload, plan

    s = quick_settings(ks=(0, 2, 4), drafters=("ngram", "early-exit:1@1"), hf_modes=("greedy", "prompt-lookup@3"))
    keys = [m.key for m in plan(s, Workload(target=None, prompts={}, assistant=None))]
    assert sorted(keys) == sorted(["transformers/greedy/k=0", "labkit/plain/k=0", "labkit/ngram/k=2",
                                   "labkit/ngram/k=4", "labkit/early-exit:1/k=1", "transformers/prompt-lookup/k=3",
                                   "labkit/ngram/k=4/auto", "labkit/early-exit:1/k=1/auto"])  # auto: the spec's max k


def test_cpu_time_ratios_use_cpu_time_of_greedy():
    runs = [_run(HF_GREEDY, "qa", r, 1.0, cpu_seconds=0.5) for r in range(2)]
    runs += [_run(LABKIT_PLAIN, "qa", r, 2.0, cpu_seconds=0.25) for r in range(2)]
    rows = {r.method: r for r in summarize(runs, [HF_GREEDY, LABKIT_PLAIN], ["qa"]) if r.category == "all"}
    assert rows["plain"].ratio_vs_hf_greedy == pytest.approx(0.5)  # wall: 5 vs 10 tok/s
    assert rows["plain"].ratio_cpu_vs_hf_greedy == pytest.approx(2.0)  # CPU: 40 vs 20 tok/s


def test_compiled_labkit_configurations_keep_greedy_tokens(tmp_path):
    s = quick_settings(categories=("qa",), ks=(0, 2), drafters=("ngram", "mtp"), hf_modes=("greedy",), repeats=1,
                       compile_mode="eager")  # eager: dynamo tracing without code generation (fast)
    result = run_bench(s)
    assert all(r["same_as_hf_greedy"] == 1.0 for r in result["rows"])
    assert "compiled (eager)" in format_table(result)


def test_sampled_rows_next_to_greedy_with_repetition_and_verify_cost():
    s = quick_settings(categories=("qa",), ks=(0, 2), drafters=("ngram", "hybrid:2"), hf_modes=("greedy",),
                       repeats=1, temperature=1.0, top_k=16, top_p=0.95)
    result = run_bench(s)
    rows = {(r["method"], r["k"], r["decoding"]): r for r in result["rows"] if r["category"] == "all"}
    for name, k in (("plain", 0), ("ngram", 2), ("hybrid:2", 2)):
        greedy, sampled = rows[(name, k, "greedy")], rows[(name, k, "sampled")]
        assert 0.0 <= greedy["repetition"] <= 1.0 and 0.0 <= sampled["repetition"] <= 1.0
        assert greedy["ratio_vs_plain"] > 0 and sampled["ratio_vs_plain"] > 0
    assert rows[("plain", 0, "sampled")]["ratio_vs_plain"] == pytest.approx(1.0)  # against plain *sampled*
    assert rows[("ngram", 2, "greedy")]["same_as_hf_greedy"] == 1.0  # greedy stays exact
    assert rows[("plain", 0, "sampled")]["same_as_hf_greedy"] < 1.0  # sampling really sampled
    assert rows[("greedy", 0, "greedy")]["repetition"] is not None  # transformers rows carry it too
    assert sorted(result["meta"]["verify_cost"]["ratios"]) == sorted(machine.KS)  # the session's one reference
    table = format_table(result)
    assert "verify cost T(n)/T(1)" in table and "interleaved rounds" in table
    assert "labkit ngram k=2 sampled" in table and "rep4" in table


def test_dynamic_draft_length_rows_next_to_fixed_k(bench):
    """The "auto" policy runs per drafter at most its largest k, with the verify cost measured before the runs."""
    from labkit.core.draft_length import ConfidenceStop, CostModel, Heuristic, policy_from_name

    result = bench[0]
    auto = [r for r in result["rows"] if r["policy"] == "auto" and r["category"] == "all"]
    assert {r["method"] for r in auto} == {"ngram", "draft-model"}
    for r in auto:
        assert r["k"] == 3 and 0 < r["mean_draft_length"] <= 3 and r["alpha"] is not None  # the MLE needs no single k
        fixed = next(x for x in result["rows"] if x["method"] == r["method"] and x["k"] == 3 and not x["policy"]
                     and x["category"] == "all")
        if r["method"] == "draft-model":  # a draft model always drafts k (less only at the budget's end)
            assert 2.0 <= fixed["mean_draft_length"] <= 3.0
    table = format_table(result)
    assert "labkit ngram auto k<=3" in table and "the best fixed k" in table
    assert {c["drafter"] for c in result["theory"]} == {"ngram", "draft-model"}  # dynamic rows stay out of theory
    policy = policy_from_name("auto", 6, {1: 1.1, 4: 1.5})
    assert isinstance(policy, CostModel) and policy.k_max == 6 and policy.verify_cost.at(4) == pytest.approx(1.5)
    assert isinstance(policy_from_name("heuristic", 6), Heuristic)
    assert isinstance(policy_from_name("confidence", 2), ConfidenceStop)
    with pytest.raises(ValueError, match="unknown policy"):
        policy_from_name("fastest", 4)
