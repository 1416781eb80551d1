"""`labkit bench` with vLLM beside labkit: one table, the same prompts, vLLM's counters checked on every request.

The live test starts vLLM's real server (one per method, about 2 min each on 2 cores); the CLI test needs no install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from conftest import installed_or_skip

from labkit.measure.bench import BenchSettings, run_bench


def _marked(mark: str) -> list[int]:
    """Live processes whose environment carries ``mark`` (vLLM's API server and engine core inherit it)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    if mark.encode() in f.read():
                        pids.append(int(d))
            except OSError:
                continue
    return pids


@pytest.mark.vllm
def test_bench_runs_labkit_and_vllm_in_one_table(monkeypatch):
    from labkit.engines.vllm_install import VLLMError, find_python

    installed_or_skip(find_python, VLLMError, "LABKIT_VLLM_REQUIRED")
    mark = f"LABKIT_BENCH_VLLM_TEST={uuid.uuid4().hex}"
    monkeypatch.setenv(*mark.split("="))  # every server this run starts inherits it: found by it afterwards
    s = BenchSettings(engines=("labkit", "vllm"), drafters=("ngram@2",), ks=(0, 2), policies=(), hf_modes=("greedy",),
                      vllm_methods=("plain", "ngram@2"), categories=("code",), prompts_per_category=1,
                      max_new_tokens=32, repeats=1, progress=False)
    result = run_bench(s)
    rows = {(r["engine"], r["method"], r["k"]): r for r in result["rows"] if r["category"] == "all"}
    assert {("labkit", "plain", 0), ("labkit", "ngram", 2), ("vllm", "plain", 0), ("vllm", "ngram", 2)} <= set(rows)
    cc = result["meta"]["counter_check"]
    vllm_spec = [r for r in result["runs"] if r["method"] == "vllm/ngram/k=2"]
    assert cc is not None and cc["agree"] == cc["requests"] >= len(vllm_spec) >= 1
    assert all(r["counters_agree"] for r in vllm_spec)
    ngram = rows[("vllm", "ngram", 2)]
    assert ngram["mean_acceptance_length"] > 1
    assert rows[("vllm", "plain", 0)]["ratio_vs_plain"] == pytest.approx(1.0)
    assert ngram["ratio_vs_plain"] == pytest.approx(ngram["end_to_end_tok_s"] / rows[("vllm", "plain", 0)]
                                                    ["end_to_end_tok_s"])
    assert _marked(mark) == []  # no vLLM process (API server, engine core) outlives the bench
    print({k: (round(r["end_to_end_tok_s"], 1), r["ratio_vs_plain"], r["mean_acceptance_length"])
           for k, r in rows.items()}, result["meta"]["load_average"])


def test_cli_rejects_vllm_without_an_install_in_one_line(tmp_path):
    env = {**os.environ, "LABKIT_CACHE_DIR": str(tmp_path)}
    env.pop("LABKIT_VLLM_PYTHON", None)
    p = subprocess.run([sys.executable, "-m", "labkit", "bench", "--engines", "labkit,vllm", "--out", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode != 0
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert "vllm: not installed: run `labkit vllm-server install`" in lines[0]
    assert not list(tmp_path.iterdir())  # nothing written, no model loaded


def test_vllm_methods_are_planned_and_its_rows_are_against_vllm_plain():
    from labkit.core import metrics
    from labkit.measure.bench import HF_GREEDY, LABKIT_PLAIN, Method, RunRecord, Workload, plan, summarize

    s = BenchSettings(engines=("labkit", "vllm"), drafters=(), ks=(0,), hf_modes=("greedy",),
                      vllm_methods=("plain", "ngram@2", "ngram@4"))
    keys = [m.key for m in plan(s, Workload(target=None, prompts={}))]
    assert keys[-3:] == ["vllm/plain/k=0", "vllm/ngram/k=2", "vllm/ngram/k=4"]
    vplain, vngram = Method("vllm", "plain", 0), Method("vllm", "ngram", 2)

    def run(m, seconds):
        return RunRecord(m.key, "qa", 0, 0, seconds, None, 10, metrics.Counts(new_tokens=10, runs=1), True)

    runs = [run(HF_GREEDY, 1.0), run(LABKIT_PLAIN, 0.5), run(vplain, 2.0), run(vngram, 1.0)]
    rows = {(r.engine, r.method): r
            for r in summarize(runs, [HF_GREEDY, LABKIT_PLAIN, vplain, vngram], ["qa"]) if r.category == "all"}
    assert rows[("vllm", "ngram")].ratio_vs_plain == pytest.approx(2.0)  # 10 tok/s over vLLM plain's 5
    assert rows[("vllm", "plain")].ratio_vs_plain == pytest.approx(1.0)
    assert rows[("labkit", "plain")].ratio_vs_plain == pytest.approx(1.0)
    assert rows[("vllm", "ngram")].ratio_vs_hf_greedy == pytest.approx(10.0 / 10.0)


def test_vllm_per_request_figures_are_checked_against_its_counter_deltas():
    from labkit.core import metrics
    from labkit.measure.bench.run import counters_agree

    c = metrics.Counts(drafts=3, draft_tokens=6, accepted=2)
    raw = {"num_spec_steps": 3, "num_draft_tokens": 6, "num_accepted_draft_tokens": 2}
    assert counters_agree(raw, c) is True
    assert counters_agree({**raw, "num_accepted_draft_tokens": 3}, c) is False
    assert counters_agree({}, c) is None  # vLLM plain: no speculation, nothing to check
    assert counters_agree({"draft_n": 6, "draft_n_accepted": 2}, c) is True  # llama.cpp's names


def test_vllm_methods_option_expands_its_ks():
    from labkit.cli.bench import _csv_vllm

    assert _csv_vllm("plain,ngram@2,4") == ("plain", "ngram@2", "ngram@4")


def test_a_bad_vllm_method_is_one_line_before_anything_loads():
    s = BenchSettings(engines=("labkit", "vllm"), vllm_methods=("suffix",))
    with pytest.raises(ValueError, match="vllm method"):
        s.check()
