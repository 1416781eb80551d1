"""llama.cpp's ``llama-server`` binary: built once per machine from PyPI's source, proven to serve before it is kept.

Getting the binary, in this order: ``--llama-server PATH`` (or ``LlamaServer(binary=...)``), ``$LABKIT_LLAMA_SERVER``,
labkit's cached build (``labkit llama-server build``: only the ``llama-server`` target, from the MIT-licensed
``llama-cpp-python`` sdist, which vendors llama.cpp).

Why a build must prove itself: ``-DGGML_NATIVE=ON`` compiles ggml's AMX kernels on an Intel CPU that advertises AMX,
and on virtual machines the first matrix product then faults at ``ldtilecfg`` (exit 139) although the kernel granted
the tile permission (llama.cpp issue 20824, Ollama issue 17249). So a build is started once on the embedded GGUF and
asked for a short completion; if that fails, ggml's CPU backend is rebuilt without AMX (``-mno-amx-*``: its AMX code
is guarded by ``__AMX_INT8__``) and tried again. Only a binary that served is cached, and ``build.json`` says which
variant was kept and why. A cached binary that was never proven (an older labkit's) is tried once on first use.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.engines.base import EngineError
from labkit.engines.process import exit_text, read_record, run_logged, write_record

LLAMA_CPP_PYTHON = "0.3.36"  # its sdist vendors llama.cpp at 0c1e57098 (2026-10-01)
CMAKE_FLAGS = ("-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
               "-DLLAMA_OPENSSL=OFF", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF", "-DCMAKE_BUILD_TYPE=Release")
NO_AMX = ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")
VARIANTS = ("native", "native-no-amx")  # tried in this order; the first that serves is kept
BUILD_ESTIMATE_S = 9 * 60  # the first build on 2 cores here (another job running); later builds record their own
PROOF_TIMEOUT_S = 25.0  # start + one short completion; a crash shows within a second or two
FORCE_HINT = "rebuild it with `labkit llama-server build --force`"


class LlamaServerError(EngineError):
    """Anything that keeps a llama-server from serving: one line that names the fix."""


@dataclass
class Proof:
    """Whether a binary served one short completion on the embedded GGUF, and if not, why (one line)."""

    served: bool
    why: str
    log: str | None = None


# ----------------------------------------------------------------------------------------------------- the cache


def cache_root() -> Path:
    from labkit.models.embedded import cache_dir

    return cache_dir() / "llama.cpp" / LLAMA_CPP_PYTHON


def cached_binary() -> Path:
    return cache_root() / "llama-server"


def build_record() -> dict[str, Any]:
    """The cache's ``build.json`` (empty when there is none or it is unreadable)."""
    return read_record(cache_root() / "build.json")


def _write_record(rec: dict[str, Any]) -> None:
    write_record(cache_root() / "build.json", rec)


def this_cpu() -> str:
    """The CPU a proof holds for: its model name and the flags that change which kernels run."""
    from labkit.threads import cpu_info

    name, features = cpu_info()
    amx = "amx" if any(on for f, on in features.items() if f.startswith("amx")) else "no amx"
    return f"{name} ({amx})"


def find_binary(explicit: str | os.PathLike | None = None) -> Path:
    """The llama-server to run: ``explicit``, else $LABKIT_LLAMA_SERVER, else labkit's cached build, which must
    have served on this CPU (a build from an older labkit is tried once here; a crash is one line, not a hang)."""
    env = os.environ.get("LABKIT_LLAMA_SERVER")
    for source, value in (("--llama-server", explicit), ("$LABKIT_LLAMA_SERVER", env)):
        if value:
            path = Path(value).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise LlamaServerError(f"{source}: {path} is not an executable file; pass the path of a llama-server "
                                       "binary, or build one with `labkit llama-server build`")
            return path
    path = cached_binary()
    if not path.is_file():
        raise LlamaServerError("no llama-server binary: build one with `labkit llama-server build` (about "
                               f"{_estimate() // 60} min, once per machine), or pass --llama-server PATH / set "
                               "LABKIT_LLAMA_SERVER")
    rec = _cached_proof(path)
    if not rec["served"]:
        raise LlamaServerError(f"the cached llama-server ({rec.get('variant', 'an older build')}) does not serve on "
                               f"this CPU: {rec['why']}; {FORCE_HINT}")
    return path


def _cached_proof(path: Path) -> dict[str, Any]:
    """The cached binary's record, proven on this CPU: one never tried here (an older labkit's, or a record from
    another CPU) is tried now, silently (a failure is the caller's one line), and the answer remembered."""
    rec = build_record()
    if rec.get("cpu") == this_cpu() and "served" in rec:
        return rec
    proof = prove(path)
    rec = {**rec, "variant": rec.get("variant", "native (older labkit)"), "served": proof.served, "why": proof.why,
           "cpu": this_cpu(), "proved": time.strftime("%Y-%m-%d %H:%M")}
    with contextlib.suppress(OSError):
        _write_record(rec)
    return rec


def _estimate() -> int:
    return int(build_record().get("seconds", BUILD_ESTIMATE_S))


# ----------------------------------------------------------------------------------------------------- the proof


def crash_hint(code: int | None) -> str:
    """What to do about a crash: on a virtual Intel CPU with AMX it is ggml's AMX kernels (llama.cpp 20824)."""
    if code in (-11, 139, -4, 132):
        return ("; on an Intel CPU with AMX in a virtual machine this is ggml's AMX kernels (llama.cpp issue 20824): "
                + FORCE_HINT)
    return ""


def prove(binary: Path, model: Path | None = None, timeout: float = PROOF_TIMEOUT_S) -> Proof:
    """Start ``binary`` on the embedded GGUF and ask for a 4-token completion: did it serve?"""
    import urllib.request

    from labkit.engines.llama_cpp import LlamaServer
    from labkit.models.embedded import gguf_path

    t0 = time.monotonic()
    server = LlamaServer(model or gguf_path(), binary=binary, threads=1, ready_timeout=timeout, context=256)
    try:
        server.start()
        body = json.dumps({"prompt": "The capital of France is", "n_predict": 4, "temperature": 0}).encode()
        req = urllib.request.Request(server.url + "/completion", data=body,
                                     headers={"Content-Type": "application/json"})
        left = max(1.0, timeout - (time.monotonic() - t0))
        with urllib.request.urlopen(req, timeout=left) as r:
            out = json.loads(r.read().decode())
        n = int(out.get("timings", {}).get("predicted_n", 0)) or len(out.get("tokens", []))
        if n < 1:
            return Proof(False, f"it answered without generating a token: {str(out)[:120]}", _log(server))
        return Proof(True, f"served {n} tokens in {time.monotonic() - t0:.1f} s")
    except (LlamaServerError, OSError, ValueError) as e:
        if server.proc is not None:  # a reset connection may come a moment before the exit status
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.proc.wait(timeout=2)
        code, listened = server.returncode, server.listened
        if code is not None:  # it died: say how, not just "connection reset"
            when = "on its first completion" if listened else "before it listened"
            return Proof(False, f"it crashed {when} ({exit_text(code)})", _log(server))
        return Proof(False, str(e).split("; its log")[0], _log(server))
    finally:
        server.stop()


def _log(server: Any) -> str | None:
    return str(server.log_path) if server.log_path else None


# ----------------------------------------------------------------------------------------------------- building


def build(jobs: int | None = None, progress: bool = True, force: bool = False) -> Path:
    """Build only ``llama-server`` from the llama-cpp-python sdist, keep the first variant that serves, and cache
    it. A cached binary that served is returned at once unless ``force``; one never proven is tried first."""
    target = cached_binary()
    if target.is_file() and not force:
        if _cached_proof(target)["served"]:
            return target
        print("llama-server: the cached binary does not serve on this CPU; building it again", file=sys.stderr)
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise LlamaServerError(f"building llama-server needs {tool} on PATH (e.g. apt-get install cmake g++)")
    jobs = jobs or os.cpu_count() or 2
    root = cache_root()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"building llama-server from llama-cpp-python {LLAMA_CPP_PYTHON} (llama.cpp source, MIT) with {jobs} "
          f"job(s): about {_estimate() // 60} min on 2 cores; once per machine", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        work = Path(tmp)
        src = _fetch_source(work)
        variant, binary, tried = _first_that_serves(src, work, jobs, progress)
        if variant is None or binary is None:
            with contextlib.suppress(OSError):
                target.unlink()  # never keep an older binary next to a record that says nothing served
            fails = "; ".join(f"{t['variant']}: {t['why']} (log {t['log']})" for t in tried)
            _write_record({"when": time.strftime("%Y-%m-%d %H:%M"), "served": False, "why": fails,
                           "cpu": this_cpu(), "tried": tried, "llama_cpp_python": LLAMA_CPP_PYTHON})
            raise LlamaServerError(f"no llama-server build served a completion on this CPU, none was cached: {fails}")
        shutil.copy2(binary, root / "llama-server.tmp")
        os.replace(root / "llama-server.tmp", target)  # atomic: a half-copied binary is never found
    seconds = time.perf_counter() - t0
    _write_record({"seconds": round(seconds), "jobs": jobs, "when": time.strftime("%Y-%m-%d %H:%M"),
                   "variant": variant, "served": True, "why": _why_kept(tried), "cpu": this_cpu(),
                   "tried": tried, "llama_cpp_python": LLAMA_CPP_PYTHON})
    print(f"llama-server: kept the {variant} build, {_why_kept(tried)} (built in {seconds / 60:.1f} min): {target}",
          file=sys.stderr, flush=True)
    return target


def _why_kept(tried: list[dict[str, Any]]) -> str:
    if len(tried) == 1:
        return "it served its first completion"
    before = "; ".join(f"the {t['variant']} build failed: {t['why']}" for t in tried[:-1])
    return f"{before}; this one served its first completion"


def _first_that_serves(src: Path, work: Path, jobs: int,
                       progress: bool) -> tuple[str | None, Path | None, list[dict[str, Any]]]:
    """Compile each variant in turn (the same build folder: the no-AMX one recompiles only ggml's CPU backend)
    and prove it; stop at the first that serves."""
    tried: list[dict[str, Any]] = []
    for variant in VARIANTS:
        log = cache_root() / "logs" / f"build-{variant}.log"
        log.write_text("")
        binary = compile_variant(src, work / "build", variant, jobs, log, progress)
        proof = prove(binary)
        kept_log = proof.log
        if proof.log:  # the server's log outlives the temporary folder, next to the build log
            kept_log = str(cache_root() / "logs" / f"serve-{variant}.log")
            with contextlib.suppress(OSError):
                shutil.move(proof.log, kept_log)
        tried.append({"variant": variant, "served": proof.served, "why": proof.why,
                      "log": kept_log if not proof.served else str(log)})
        if proof.served:
            return variant, binary, tried
        print(f"llama-server: the {variant} build did not serve: {proof.why}; its log is {kept_log}",
              file=sys.stderr, flush=True)
    return None, None, tried


def compile_variant(src: Path, build_dir: Path, variant: str, jobs: int, log: Path, progress: bool) -> Path:
    """Configure and build ``llama-server`` for one variant; returns the binary. ``native-no-amx`` adds
    ``-mno-amx-*`` to ggml's CPU backend only (after -march=native: GCC lets explicit -mno-* win)."""
    from tqdm.auto import tqdm

    include = build_dir.parent / "no-amx.cmake"
    include.write_text(f"cmake_language(DEFER DIRECTORY \"${{CMAKE_SOURCE_DIR}}\" CALL target_compile_options "
                       f"ggml-cpu PRIVATE {' '.join(NO_AMX)})\n")
    extra = [f"-DCMAKE_PROJECT_llama.cpp_INCLUDE={include}"] if variant == "native-no-amx" else \
        ["-UCMAKE_PROJECT_llama.cpp_INCLUDE"]
    _run(["cmake", "-S", str(src), "-B", str(build_dir), *CMAKE_FLAGS, *extra], log, "configure")
    bar = tqdm(total=100, desc=f"llama-server ({variant})", unit="%", disable=not progress)
    try:
        _run(["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", str(jobs)], log, "build", bar)
    finally:
        bar.close()
    built = build_dir / "bin" / "llama-server"
    if not built.is_file():
        raise LlamaServerError(f"the build finished without {built.name}; see {log}")
    return built


def _fetch_source(work: Path) -> Path:
    """The sdist from PyPI (pip knows the index and any mirror), unpacked: only vendor/llama.cpp."""
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
          f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(work)], work / "download.log", "download")
    sdist = next(work.glob("llama_cpp_python-*.tar.gz"))
    marker = "/vendor/llama.cpp/"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if marker in m.name]
        tar.extractall(work, members=members, filter="data")
    sdist.unlink()
    return next(work.glob("llama_cpp_python-*")) / "vendor" / "llama.cpp"


def _run(cmd: list[str], log: Path, what: str, bar: Any = None) -> None:
    """Run a build step, its output to ``log``; "[ 42%]" lines move ``bar``. A failure is one line naming the log."""

    def percent(line: str) -> None:
        m = re.match(r"\[\s*(\d+)%\]", line)
        if bar is not None and m:
            bar.update(int(m.group(1)) - bar.n)

    code = run_logged(cmd, log, percent)
    if code != 0:
        raise LlamaServerError(f"llama-server {what} step failed (exit {code}); the log is {log}")


def describe() -> str:
    """One line for `labkit doctor`: which llama-server is cached, which variant, and whether it served."""
    rec = build_record()
    if not cached_binary().is_file():
        last = f"; the last build served nothing: {rec['why']}" if rec.get("served") is False else ""
        return f"llama-server: none cached (`labkit llama-server build`, once per machine){last}"
    variant = rec.get("variant", "an older labkit's build")
    if "served" not in rec:
        return f"llama-server: {variant}, not yet tried on this CPU (labkit tries it once on first use)"
    where = "this CPU" if rec.get("cpu") == this_cpu() else f"another CPU ({rec.get('cpu', 'unknown')})"
    if rec["served"]:
        return f"llama-server: {variant}, served on {where}: {rec.get('why', '')}"
    return f"llama-server: {variant}, did not serve on {where}: {rec.get('why', '')}; {FORCE_HINT}"

