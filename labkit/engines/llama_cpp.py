"""llama.cpp's ``llama-server`` on this machine: built once from PyPI's source, started and always stopped by labkit.

Getting the binary, in this order: ``--llama-server PATH`` (or ``LlamaServer(binary=...)``), ``$LABKIT_LLAMA_SERVER``,
labkit's cached build (``labkit llama-server build``: only the ``llama-server`` target, from the MIT-licensed
``llama-cpp-python`` sdist, which vendors llama.cpp). A server started here listens on 127.0.0.1 on a free port,
is ready when ``/health`` answers, and is stopped on exit, on an exception, on Ctrl-C, and (Linux) when the process
that started it is killed: the child asks the kernel for SIGTERM when its parent dies.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labkit.engines.llama_build import LlamaServerError, build, cached_binary, crash_hint, exit_text, find_binary

# building and proving the binary lives in llama_build; these names stay importable from here
__all__ = ["LlamaCppEngine", "LlamaServer", "LlamaServerError", "build", "cached_binary", "find_binary", "spec_args"]


# ----------------------------------------------------------------------------------------------------- running

_LIVE: set[LlamaServer] = set()


def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


atexit.register(_stop_all)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _libc_prctl() -> Any:
    """libc's prctl, resolved in the parent: loading a library in the child of a threaded process (torch's threads)
    is not safe between fork and exec, calling an already resolved function is."""
    if sys.platform != "linux":
        return None
    with contextlib.suppress(Exception):
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    return None


_PRCTL = _libc_prctl()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (PR_SET_PDEATHSIG), so a killed Python (a kernel
    killed from JupyterLab) leaves no server behind."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)


class LlamaServer:
    """One llama-server process for ``model`` (a GGUF file) with extra ``args`` (e.g. ``["--spec-default"]``).

    ``with LlamaServer(gguf, ["--spec-type", "ngram-simple"]) as s: s.url`` — started on 127.0.0.1 (a free port
    unless ``port`` is given), ready when ``/health`` answers, stopped when the block ends, whatever ends it."""

    def __init__(self, model: str | os.PathLike, args: Sequence[str] = (), binary: str | os.PathLike | None = None,
                 threads: int | None = None, port: int | None = None, ready_timeout: float = 120.0,
                 context: int = 2048):
        self.model, self.args = Path(model), list(args)
        self.binary = find_binary(binary)
        self.threads = threads or _threads()
        self.port, self.ready_timeout, self.context = port, ready_timeout, context
        self.proc: subprocess.Popen | None = None
        self._ended: int | None = None  # the exit status, kept after stop()
        self.listened = False  # /health answered once
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [str(self.binary), "-m", str(self.model), "--host", "127.0.0.1", "--port", str(self.port),
                "--metrics", "--no-webui", "-t", str(self.threads), "-c", str(self.context), "-np", "1",
                *self.args]

    def start(self) -> LlamaServer:
        if not self.model.is_file():
            raise LlamaServerError(f"model: {self.model} does not exist (a GGUF file; the embedded one is "
                                   "labkit.models.embedded.gguf_path())")
        if self.port is None:
            self.port = free_port()
        elif _port_taken(self.port):
            raise LlamaServerError(f"port {self.port} on 127.0.0.1 is taken: pass another port, or none (labkit "
                                   "picks a free one)")
        fd, log = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
        self.log_path = Path(log)
        with os.fdopen(fd, "w") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         preexec_fn=_die_with_parent if _PRCTL is not None else None)
        _LIVE.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                code = self.proc.returncode
                raise LlamaServerError(f"llama-server exited at start ({exit_text(code)}): {self.last_error()}"
                                       f"{crash_hint(code)}; its log is {self.log_path}")
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200 and json.loads(r.read().decode()).get("status") == "ok":
                        self.listened = True
                        return
            time.sleep(0.2)
        raise LlamaServerError(f"llama-server did not answer /health within {self.ready_timeout:.0f} s; its log "
                               f"is {self.log_path}")

    def last_error(self) -> str:
        """The most telling line of the server's log (an error line, else the last one)."""
        try:
            lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except (OSError, AttributeError):
            return "no log"
        errors = [ln for ln in lines if re.search(r"error|failed|couldn't|unable|invalid", ln, re.I)]
        return (errors or lines or ["no output"])[-1][:300]

    def exit_text(self) -> str:
        """How the process ended, in words ("running" while it runs)."""
        return "running" if self.returncode is None else exit_text(self.returncode)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended (also after ``stop``), else None."""
        return self._ended if self.proc is None else self.proc.poll()

    def stop(self) -> None:
        """Terminate (SIGTERM, then SIGKILL after 5 s); safe to call twice."""
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._ended = proc.returncode

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LlamaServer({self.model.name}, {' '.join(self.args) or 'plain'}, {self.url})"


def _threads() -> int:
    from labkit.threads import choose_threads

    return choose_threads()[0]


# ----------------------------------------------------------------------------------------------------- lossless?

NEAR_TIE = 0.25  # nats between the target's top two tokens: batched arithmetic may order them either way


def greedy_difference(plain: Any, prompt: Any, ours: Sequence[int], theirs: Sequence[int]) -> dict[str, Any] | None:
    """Where two greedy outputs of one prompt first differ, and whether it is a near-tie: plain decoding's top two
    log-probabilities there (asked of ``plain``, a plain-decoding engine, again) are the two tokens chosen and lie
    within NEAR_TIE nats. None when the outputs are the same."""
    i = next((j for j, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
    if i is None:
        return None
    top = plain.run(prompt, i + 1, top=2).raw["probs"][i]
    a, b = ours[i], theirs[i]
    gap = abs(top[a] - top[b]) if a in top and b in top else float("inf")
    return {"position": i, "gap": gap, "near_tie": gap < NEAR_TIE, "tokens": (a, b)}


# ----------------------------------------------------------------------------------------------------- configurations


NGRAM_N = 3  # lookup n-gram of ngram-simple / ngram-map-k: labkit's NGramDrafter(3), not llama.cpp's default 12


def spec_args(method: str, k: int = 0, ngram_n: int | None = NGRAM_N) -> list[str]:
    """llama-server flags for a drafting method: "plain", "ngram-mod" (llama.cpp's --spec-default), or a
    --spec-type drafting ``k`` tokens. For ngram-simple and ngram-map-k the draft is the m-gram that followed the
    matched n-gram, so k is ``--spec-<type>-size-m`` (``--spec-draft-n-max`` does not limit them; their default m
    is 48), and the lookup n-gram is ``ngram_n`` tokens like labkit's prompt lookup (None: llama.cpp's default of
    12, which rarely matches in a short generation), at most k: llama.cpp never drafts fewer tokens than the n-gram
    it matched. Other types take k as ``--spec-draft-n-max``."""
    if method == "plain":
        return []
    if method == "ngram-mod":
        return ["--spec-default"]
    if k < 1:
        raise ValueError(f"k: {method} needs a draft length k >= 1, got {k}")
    if method.startswith("synthetic-"):
        # llama.cpp's timing-only mode: n-gram drafts of k tokens from a 1-token match (nearly every round drafts),
        # accepted at unconditional rates alpha^(j+1) by position, whatever the target says: the text is not greedy's
        alpha = synthetic_alpha(method)
        rates = ",".join(f"{alpha ** (j + 1):.4f}" for j in range(k))
        return ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-m", str(k), "--spec-ngram-simple-size-n",
                "1", "--spec-synth-rates", rates]
    if method in ("ngram-simple", "ngram-map-k"):
        # llama.cpp drafts nothing when the draft would be shorter than the n-gram: n <= k
        size = [f"--spec-{method}-size-n", str(min(ngram_n, k))] if ngram_n else []
        return ["--spec-type", method, f"--spec-{method}-size-m", str(k), *size]
    return ["--spec-type", method, "--spec-draft-n-max", str(k)]


def synthetic_alpha(method: str) -> float:
    """The acceptance rate α of a "synthetic-α" method (``synthetic-0.8``): 0 < α <= 1."""
    try:
        alpha = float(method.removeprefix("synthetic-"))
    except ValueError:
        alpha = -1.0
    if not 0 < alpha <= 1:
        raise ValueError(f"{method!r}: expected synthetic-ALPHA with 0 < ALPHA <= 1, e.g. synthetic-0.8")
    return alpha


class LlamaCppEngine:
    """A llama-server for one configuration behind the engine protocol: started on construction (a free port on
    127.0.0.1), stopped by ``close()``, by ``with``, or when Python exits."""

    def __init__(self, model: str | os.PathLike, method: str = "plain", k: int = 0, binary: str | None = None,
                 threads: int | None = None, extra: Sequence[str] = ()):
        from labkit.engines.server import ServerEngine

        self.name = f"llama.cpp {method}" + (f" k={k}" if k else "")
        self.server = LlamaServer(model, [*spec_args(method, k), *extra], binary=binary, threads=threads).start()
        try:
            self.client = ServerEngine(self.server.url, name=self.name)
        except BaseException:
            self.server.stop()
            raise

    def run(self, prompt: Any, max_new_tokens: int, top: int = 0) -> Any:
        if not self.server.alive():
            raise LlamaServerError(f"{self.name}: the llama-server stopped ({self.server.last_error()}); restart the "
                                   "run (labkit starts a new one)")
        from labkit.engines.server import ServerError

        try:
            return self.client.run(prompt, max_new_tokens, top)
        except ServerError as e:
            if not self.server.alive():
                raise LlamaServerError(f"{self.name}: the llama-server died during the request "
                                       f"({self.server.exit_text()}: {self.server.last_error()})"
                                       f"{crash_hint(self.server.returncode)}") from None
            raise e

    def close(self) -> None:
        self.server.stop()

    def __enter__(self) -> LlamaCppEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
