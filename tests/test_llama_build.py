"""Building llama-server: the first variant that serves is kept, a crashing one never is, and a cached binary that
crashes is found out in one line. The compile step is replaced by stand-in binaries (small scripts: one exits with
139 as a segfaulting llama-server does on a virtual AMX machine, one serves /health and /completion), because a real
build takes minutes; tests/test_llama_cpp.py proves the real build on whatever CPU the suite runs on."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit.engines import llama_build
from labkit.engines.llama_build import LlamaServerError

CRASH_AT_START = "#!/bin/sh\necho 'llama threadpool init'\nexit 139\n"  # what the AMX build did before listening

SERVER = """#!{python}
import json, os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port = int(sys.argv[sys.argv.index("--port") + 1])


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.send({{"status": "ok"}})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        if {crash}:  # listens, then dies by a real SIGSEGV on the first matrix product
            os.kill(os.getpid(), signal.SIGSEGV)
        self.send({{"content": " Paris", "timings": {{"predicted_n": 4}}}})


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def _script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def serving(path: Path) -> Path:
    return _script(path, SERVER.format(python=sys.executable, crash=False))


def crashing_on_first_completion(path: Path) -> Path:
    return _script(path, SERVER.format(python=sys.executable, crash=True))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """labkit's cache in a temporary folder, no binary named by the environment, no real download."""
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LABKIT_LLAMA_SERVER", raising=False)
    monkeypatch.setattr(llama_build, "_fetch_source", lambda work: work)
    return llama_build.cache_root()


def stand_in_compiler(monkeypatch, makers: dict):
    """compile_variant replaced: each variant 'builds' the stand-in ``makers[variant]`` writes; returns the list
    of variants compiled, in order."""
    compiled = []

    def compile_variant(src, build_dir, variant, jobs, log, progress):
        compiled.append(variant)
        return makers[variant](build_dir / "bin" / "llama-server")

    monkeypatch.setattr(llama_build, "compile_variant", compile_variant)
    return compiled


def test_a_build_that_crashes_falls_back_to_no_amx_and_records_why(cache, monkeypatch, capsys):
    compiled = stand_in_compiler(monkeypatch, {"native": lambda p: _script(p, CRASH_AT_START),
                                               "native-no-amx": serving})
    t0 = time.monotonic()
    path = llama_build.build(progress=False)
    assert compiled == ["native", "native-no-amx"], "the crash made it rebuild without AMX"
    assert time.monotonic() - t0 < 30
    rec = json.loads((cache / "build.json").read_text())
    assert rec["variant"] == "native-no-amx" and rec["served"] is True and rec["cpu"] == llama_build.this_cpu()
    native = rec["tried"][0]
    assert native["variant"] == "native" and native["served"] is False
    assert "exit 139, a segmentation fault" in native["why"] and "before it listened" in native["why"]
    assert Path(native["log"]).is_file() and "threadpool" in Path(native["log"]).read_text()
    kept = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("llama-server: kept")]
    assert len(kept) == 1 and "native-no-amx" in kept[0] and "exit 139" in kept[0], kept
    assert path == llama_build.cached_binary() and "HTTPServer" in path.read_text(), "the serving variant was cached"
    assert llama_build.find_binary() == path
    assert "native-no-amx, served on this CPU" in llama_build.describe()


def test_a_native_build_that_serves_is_kept_without_a_second_build(cache, monkeypatch):
    compiled = stand_in_compiler(monkeypatch, {"native": serving, "native-no-amx": serving})
    llama_build.build(progress=False)
    rec = llama_build.build_record()
    assert compiled == ["native"] and rec["variant"] == "native" and len(rec["tried"]) == 1
    assert llama_build.build(progress=False) == llama_build.cached_binary() and compiled == ["native"], \
        "a proven cached binary is returned without building again"


def test_a_crash_during_the_first_completion_is_caught_too(cache, monkeypatch):
    stand_in_compiler(monkeypatch, {"native": crashing_on_first_completion, "native-no-amx": serving})
    llama_build.build(progress=False)
    why = llama_build.build_record()["tried"][0]["why"]
    assert "on its first completion" in why and "a segmentation fault" in why, why


def test_when_no_variant_serves_nothing_is_cached_and_the_error_is_one_line(cache, monkeypatch):
    stand_in_compiler(monkeypatch, {"native": lambda p: _script(p, CRASH_AT_START),
                                    "native-no-amx": crashing_on_first_completion})
    t0 = time.monotonic()
    with pytest.raises(LlamaServerError) as e:
        llama_build.build(progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "none was cached" in msg and time.monotonic() - t0 < 60  # two failures, 30 s each
    logs = [w.rstrip(")") for w in msg.replace(";", " ").split() if w.endswith(".log)")]
    assert len(logs) == 2 and all(Path(p).is_file() for p in logs), msg
    assert not llama_build.cached_binary().exists()
    with pytest.raises(LlamaServerError, match="no llama-server binary"):
        llama_build.find_binary()
    assert "the last build served nothing" in llama_build.describe()


def old_labkit_cache(cache: Path, binary_text: str) -> Path:
    """What an older labkit left: a binary and a build.json without the proof."""
    path = _script(cache / "llama-server", binary_text)
    (cache / "build.json").write_text(json.dumps({"seconds": 400, "jobs": 2, "when": "2026-12-01 10:00"}))
    return path


def test_a_cached_binary_from_an_older_labkit_that_crashes_is_one_line(cache, monkeypatch):
    old_labkit_cache(cache, CRASH_AT_START)
    # the command line, on first use: one line on stderr, exit 2, no traceback, well within 30 s
    env = {**os.environ, "LABKIT_CACHE_DIR": str(cache.parents[1])}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "labkit", "llama-server", "path"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and time.monotonic() - t0 < 30, r.stderr
    assert "does not serve on this CPU" in r.stderr and "labkit llama-server build --force" in r.stderr
    assert "exit 139, a segmentation fault" in r.stderr
    rec = llama_build.build_record()
    assert rec["served"] is False and rec["seconds"] == 400, "the answer is remembered, the old record kept"
    # the library: the same line from the record, without starting the binary again
    t0 = time.monotonic()
    with pytest.raises(LlamaServerError) as e:
        llama_build.find_binary()
    assert time.monotonic() - t0 < 1 and "\n" not in str(e.value) and "--force" in str(e.value)


def test_build_replaces_an_older_cached_binary_that_does_not_serve(cache, monkeypatch):
    old_labkit_cache(cache, CRASH_AT_START)
    compiled = stand_in_compiler(monkeypatch, {"native": serving, "native-no-amx": serving})
    path = llama_build.build(progress=False)  # no --force needed: the cached one failed its proof
    assert compiled == ["native"] and "HTTPServer" in path.read_text()
    assert llama_build.find_binary() == path


def test_a_cached_binary_from_an_older_labkit_that_serves_is_kept(cache, monkeypatch):
    path = old_labkit_cache(cache, SERVER.format(python=sys.executable, crash=False))
    assert llama_build.find_binary() == path
    rec = llama_build.build_record()
    assert rec["served"] is True and rec["variant"] == "native (older labkit)"
    assert "served on this CPU" in llama_build.describe()


def test_exit_statuses_in_words():
    assert llama_build.exit_text(139) == "exit 139, a segmentation fault"
    assert llama_build.exit_text(-11) == "exit -11, a segmentation fault"
    assert llama_build.exit_text(-4) == "exit -4, an illegal instruction"
    assert llama_build.exit_text(1) == "exit 1"
    assert "AMX" in llama_build.crash_hint(139) and llama_build.crash_hint(1) == ""
