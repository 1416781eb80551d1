"""llama.cpp's llama-server, for real: built once per machine (`labkit llama-server build`, run by `make test`),
started on 127.0.0.1 by labkit, on the embedded GGUF. Nothing here is mocked."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import installed_or_skip

from labkit.core import metrics
from labkit.engines import llama_cpp
from labkit.engines.llama_cpp import LlamaCppEngine, LlamaServer, LlamaServerError
from labkit.engines.server import ServerEngine, ServerError

CODE = "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n\ndef fib"
PROMPT = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is"
N = 24

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def binary():
    return installed_or_skip(llama_cpp.find_binary, LlamaServerError, "LABKIT_LLAMA_REQUIRED")


@pytest.fixture(scope="module")
def gguf():
    from labkit.models.embedded import gguf_path

    return gguf_path()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
        return f.read().split()[2] != "Z"


def test_the_binary_serves_on_this_cpu_and_the_cache_says_which_variant(binary, gguf):
    """The real binary (on an AMX machine, the build without AMX) serves a completion here; labkit's own build
    records which variant it kept, that it served on this CPU, and `labkit doctor` says so."""
    from labkit.engines import llama_build

    proof = llama_build.prove(binary)
    assert proof.served, proof.why
    if binary == llama_build.cached_binary():
        rec = llama_build.build_record()
        assert rec["served"] is True and rec["cpu"] == llama_build.this_cpu(), rec
        assert rec["variant"] in (*llama_build.VARIANTS, "native (older labkit)"), rec
        assert f"{rec['variant']}, served on this CPU" in llama_build.describe()


def test_greedy_text_is_the_same_with_and_without_the_ngram_drafter(binary, gguf):
    """llama.cpp keeps a draft only if it is the target's own greedy token: the text is plain decoding's, except
    where the verify's batched arithmetic flips a near-tie (as bf16 does in labkit, notebook 03). Every difference
    must be such a flip: at the first differing token, plain's top two tokens are within NEAR_TIE nats, and the two
    runs chose exactly those two."""
    identical = 0
    with LlamaCppEngine(gguf, "plain") as plain, LlamaCppEngine(gguf, "ngram-simple", k=4) as ngram:
        for prompt in (PROMPT, CODE):
            a, b = plain.run(prompt, N), ngram.run(prompt, N)
            assert len(a.tokens) == len(b.tokens) == N and a.counts.drafts == 0 and b.counts.drafts > 0
            d = llama_cpp.greedy_difference(plain, prompt, a.tokens, b.tokens)
            identical += d is None
            assert d is None or d["near_tie"], f"plain and ngram differ where the target was sure: {d}"
    assert identical >= 1, "on at least one prompt the texts are identical end to end"


def test_a_difference_where_the_target_is_sure_is_caught(binary, gguf):
    """The check above can fail: a made-up flip at a token the target is sure of is not a near-tie."""
    with LlamaCppEngine(gguf, "plain") as plain:
        a = plain.run(CODE, 8)
        forged = [*a.tokens[:2], a.tokens[2] + 1, *a.tokens[3:]]
        d = llama_cpp.greedy_difference(plain, CODE, a.tokens, forged)
    assert d["position"] == 2 and not d["near_tie"]


def test_counters_equal_the_sum_of_the_per_request_figures(binary, gguf):
    prompts = [PROMPT, CODE]
    with LlamaCppEngine(gguf, "ngram-simple", k=4) as eng:
        before = eng.client.counters()
        runs = [eng.run(p, N) for p in prompts]
        after = eng.client.counters()
    pooled = metrics.counts(r.counts for r in runs)
    assert pooled.drafts > 0 and pooled.accepted > 0, "the n-gram drafter drafted and was accepted on these prompts"
    assert (after.drafts - before.drafts, after.accepted - before.accepted) == (pooled.drafts, pooled.accepted)
    # the server's own per-request timings agree with its /metrics counters
    assert sum(r.raw["draft_n"] for r in runs) == pooled.draft_tokens
    assert sum(r.raw["draft_n_accepted"] for r in runs) == pooled.accepted
    assert sum(pooled.accepted_per_pos) == pooled.accepted
    m = metrics.metrics(pooled)
    assert 1 < m.mean_acceptance_length <= 5 and 0 < m.draft_acceptance_rate <= 1


def test_a_taken_port_is_one_line(binary, gguf):
    with LlamaServer(gguf) as first:
        t0 = time.monotonic()
        with pytest.raises(LlamaServerError) as e:
            LlamaServer(gguf, port=first.port).start()
        assert "taken" in str(e.value) and "\n" not in str(e.value) and time.monotonic() - t0 < 5


def test_a_missing_binary_and_a_bad_url_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_LLAMA_SERVER", str(tmp_path / "nope"))
    with pytest.raises(LlamaServerError) as e:
        llama_cpp.find_binary()
    assert "not an executable" in str(e.value) and "\n" not in str(e.value)
    t0 = time.monotonic()
    with pytest.raises(ServerError) as e:
        ServerEngine("http://127.0.0.1:9")
    assert "cannot reach" in str(e.value) and time.monotonic() - t0 < 5


def test_a_server_that_dies_mid_run_is_one_line_and_gone(binary, gguf):
    eng = LlamaCppEngine(gguf, "plain")
    pid = eng.server.proc.pid
    eng.run(PROMPT, 4)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    t0 = time.monotonic()
    with pytest.raises(LlamaServerError) as e:
        eng.run(PROMPT, 4)
    assert "stopped" in str(e.value) and "\n" not in str(e.value) and time.monotonic() - t0 < 5
    eng.close()
    assert not _alive(pid)


def test_the_server_stops_after_an_exception_ctrl_c_and_a_killed_parent(binary, gguf, tmp_path):
    with pytest.raises(KeyError):
        with LlamaServer(gguf) as s:
            pid = s.proc.pid
            {}["a failing cell"]
    assert not _alive(pid)
    # a Python that starts a server and is then interrupted (Ctrl-C), or killed outright (a kernel killed in
    # JupyterLab): in both, no llama-server may survive it
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(f"""
        import json, signal, sys, time
        from labkit.engines.llama_cpp import LlamaServer
        # as a Jupyter kernel does; a shell's background job would otherwise start with SIGINT ignored
        signal.signal(signal.SIGINT, signal.default_int_handler)
        s = LlamaServer({str(gguf)!r}).start()
        print(json.dumps({{"pid": s.proc.pid}}), flush=True)
        time.sleep(600)
    """))
    for how in (signal.SIGINT, signal.SIGKILL):
        child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        server_pid = json.loads(child.stdout.readline())["pid"]
        assert _alive(server_pid)
        child.send_signal(how)
        child.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(server_pid), f"llama-server outlived its parent after {how.name}"


def test_the_cli_reports_a_missing_binary_in_one_line(tmp_path):
    env = {**os.environ, "LABKIT_LLAMA_SERVER": str(tmp_path / "nope")}
    r = subprocess.run([sys.executable, "-m", "labkit", "llama-server", "path"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not an executable" in r.stderr, r.stderr


@pytest.mark.slow
def test_bench_puts_llama_cpp_in_the_one_table(binary, tmp_path):
    from labkit.measure.bench import BenchSettings, run_bench
    from labkit.measure.report import format_table

    s = BenchSettings(drafters=("ngram",), ks=(0, 2), policies=(), hf_modes=("greedy",), categories=("code",),
                      prompts_per_category=1, max_new_tokens=48, repeats=1, threads=2, progress=False,
                      engines=("labkit", "transformers", "llama.cpp"),
                      llama_methods=("plain", "ngram-simple", "synthetic-0.8"))
    result = run_bench(s, tmp_path)
    rows = {(r["engine"], r["method"], r["k"]): r for r in result["rows"] if r["category"] == "all"}
    plain, ngram = rows[("llama.cpp", "plain", 0)], rows[("llama.cpp", "ngram-simple", 2)]
    assert plain["ratio_vs_plain"] == pytest.approx(1.0) and plain["ratio_vs_llama_plain"] == pytest.approx(1.0)
    assert ngram["mean_acceptance_length"] is not None and ngram["alpha"] is None  # the server counts no rejections
    assert rows[("labkit", "plain", 0)]["ratio_vs_llama_plain"] > 0
    assert "llama.cpp ngram-simple k=2" in format_table(result) and "x llama" in format_table(result)
    # llama.cpp's synthetic acceptance: drafts accepted at 0.8, 0.64 by position whatever the target says
    synth = rows[("llama.cpp", "synthetic-0.8", 2)]
    assert synth["acceptance_by_position"] and 0.5 < synth["acceptance_by_position"][0] <= 1.0, synth
    assert synth["verify_cost"] is not None and 0.7 < synth["verify_cost"] < 10, synth["verify_cost"]  # 2.8 quiet
    assert "verify cost T(k+1)/T(1) from its synthetic-acceptance rows" in format_table(result)
    cc = result["meta"]["counter_check"]  # every served request: its own figures = the /metrics deltas
    assert cc["requests"] >= 2 and cc["agree"] == cc["requests"], cc  # the drafting requests (plain has none)
    assert llama_cpp._LIVE == set(), "the bench stopped every server it started"
