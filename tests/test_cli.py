"""The labkit command: generate and demo, as text and as JSON, on the embedded default."""

import json
import subprocess
import sys

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
    assert data["stats"]["new_tokens"] == 12
    assert sum(len(x["emitted"]) for x in data["rounds"]) == 12
    assert data["config"]["k"] == 3 and data["config"]["drafter"] == "ngram(n=3)"


@pytest.mark.slow
def test_generate_text_is_coloured_and_summarised():
    r = run("generate", "One, two, three, four, five,", "--max-new-tokens", "10", "--color")
    assert r.returncode == 0, r.stderr
    assert "\x1b[32m" in r.stdout or "\x1b[36m" in r.stdout or "\x1b[33m" in r.stdout
    assert "tokens/verify" in r.stdout


@pytest.mark.slow
def test_demo_json():
    r = run("demo", "--ks", "2", "--repeats", "1", "--max-new-tokens", "8", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    assert [row["k"] for row in rows] == [0, 2]
    assert rows[0]["speedup"] == 1.0 and rows[1]["tok_per_s"] > 0


def test_bad_arguments_exit_2(capsys):
    assert main(["generate", "hi", "--model", "nonsense", "--json"]) == 2
    assert "model: unknown name" in capsys.readouterr().err
    assert main(["generate", "hi", "--drafter", "bogus", "--model", "nonsense"]) == 2
