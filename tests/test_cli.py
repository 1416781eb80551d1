"""The labkit command: generate and demo, as text and as JSON, on the embedded default; bad input in one line."""

import json
import os
import subprocess
import sys
import time

import pytest

from labkit.cli import main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_generate_json_round_trip():
    r = run("generate", "The capital of France is Paris. The capital of Italy is", "--drafter", "ngram",
            "--k", "3", "--max-new-tokens", "12", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert len(data["token_ids"]) == 12
    assert data["stats"]["counts"]["new_tokens"] == 12  # labkit.core.metrics: counts, then every quantity
    assert data["stats"]["tokens_per_verify"] == pytest.approx(12 / len(data["rounds"]))
    assert sum(len(x["emitted"]) for x in data["rounds"]) == 12
    assert data["config"]["k"] == 3 and data["config"]["drafter"] == "ngram(n=3)"


@pytest.mark.slow
def test_generate_text_is_coloured_and_summarised():
    r = run("generate", "One, two, three, four, five,", "--max-new-tokens", "10", "--color")
    assert r.returncode == 0, r.stderr
    assert "\x1b[32m" in r.stdout or "\x1b[36m" in r.stdout or "\x1b[33m" in r.stdout
    assert "tokens per verify" in r.stdout and "draft acceptance rate" in r.stdout


@pytest.mark.slow
def test_demo_json():
    r = run("demo", "--ks", "2", "--repeats", "1", "--max-new-tokens", "8", "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", "--json: no progress bars or warnings on stderr"
    data = json.loads(r.stdout)
    rows = data["rows"]
    assert [row["k"] for row in rows] == [0, 2]
    assert rows[0]["speedup"] == 1.0 and rows[1]["decode_tok_s"] > 0
    assert data["threads"] >= 1 and isinstance(data["warnings"], list) and data["summary"]


@pytest.mark.slow
def test_demo_text_has_estimate_and_table():
    r = run("demo", "--ks", "2", "--repeats", "1", "--max-new-tokens", "8")
    assert r.returncode == 0, r.stderr
    assert "demo: 6 runs of 8 tokens, about" in r.stderr
    assert "tokens per verify" in r.stdout and "draft acceptance rate" in r.stdout


# Each bad input: exit 2, one line on stderr naming the fix, within 5 s (before any model loads).
BAD = [
    (["generate", "hi", "--drafter", "ngram:x"], "ngram:<n>"),
    (["generate", "hi", "--drafter", "synthetic:2"], "[0, 1]"),
    (["generate", "hi", "--drafter", "bogus"], "ngram[:n]"),
    (["generate", "hi", "--drafter", "mtp:nothing"], "available"),
    (["generate", "hi", "--drafter", "mtp:no/such/head.safetensors"], "no such file"),
    (["generate", "hi", "--drafter", "hybrid:3:auto:many"], "model_k must be 'auto'"),
    (["generate", "hi", "--drafter", "hybrid:x:auto:auto"], "hybrid:<min_match>"),
    (["generate", "hi", "--drafter", "hybrid:3:8:2:nothing"], "available"),
    (["generate", "hi", "--k", "0"], "--drafter none"),
    (["generate", "hi", "--k", "99"], "0..32"),
    (["generate", "hi", "--max-new-tokens", "0"], ">= 1"),
    (["generate", "hi", "--top-p", "1.5"], "(0, 1]"),
    (["generate", "hi", "--temperature", "-1"], ">= 0"),
    (["generate", "hi", "--threads", "many"], "auto"),
    (["generate", "hi", "--dtype", "fp8"], "bf16"),
    (["generate", "hi", "--model", "nonsense"], "embedded name"),
    (["generate", "hi", "--model", "./no/such/folder"], "local folder"),
    (["demo", "--ks", "0,x"], "2,4,8"),
    (["generate", "hi", "--model", "labkit-test/no-such-model-xyz"], "labkit-test/no-such-model-xyz"),
    (["generate", "hi", "--drafter", "draft-model:labkit-test/no-such-model-xyz"], "draft model"),
]


@pytest.mark.parametrize("args,hint", BAD, ids=[" ".join(a[1:]) for a, _ in BAD])
def test_bad_input_answers_in_one_line_within_5_s(args, hint):
    t0 = time.perf_counter()
    r = run(*args)
    elapsed = time.perf_counter() - t0
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("labkit: error:"), r.stderr
    assert hint in lines[0], lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert elapsed < 5, f"{elapsed:.1f}s: checks must run before any model loads"


def test_offline_hub_id_names_the_fix():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "labkit", "generate", "hi", "--model", "google/gemma-4-E2B-it"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "HF_HUB_OFFLINE" in r.stderr and "gemma3-270m" in r.stderr


def test_cuda_on_a_cpu_build_is_one_line():
    from labkit.cli.args import torch_build_cuda

    r = run("generate", "hi", "--device", "cuda")
    if torch_build_cuda() is None:
        assert r.returncode == 2 and "CPU-only build" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    else:  # a CUDA build: either a GPU is visible (the checks pass) or the error says none is
        assert "Traceback" not in r.stderr


def test_bad_arguments_exit_2(capsys):
    assert main(["generate", "hi", "--model", "nonsense", "--json"]) == 2
    assert "is neither an embedded name" in capsys.readouterr().err
    assert main(["generate", "hi", "--drafter", "bogus", "--model", "nonsense"]) == 2


def test_shipped_heads_match_the_weights_table():
    from labkit.cli.args import shipped_mtp_heads
    from labkit.drafters.mtp.weights import SHIPPED

    assert shipped_mtp_heads() == sorted(SHIPPED)
