"""llama.cpp's ``llama-server`` on this machine: built once from PyPI's source, started and always stopped by labkit.

Getting the binary, in this order: ``--llama-server PATH`` (or ``LlamaServer(binary=...)``), ``$LABKIT_LLAMA_SERVER``,
labkit's cached build (``labkit llama-server build``: only the ``llama-server`` target, from the MIT-licensed
``llama-cpp-python`` sdist, which vendors llama.cpp). A server started here listens on 127.0.0.1 on a free port,
is ready when ``/health`` answers, and is stopped on exit, on an exception, on Ctrl-C, and (Linux) when the process
that started it is killed: the child asks the kernel for SIGTERM when its parent dies.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labkit.engines.llama_build import LlamaServerError, build, cached_binary, crash_hint, find_binary
from labkit.engines.process import _LIVE, ServedEngine, ServerProcess, free_port, server_threads

# building and proving the binary lives in llama_build; these names stay importable from here
# process handling lives in process (free_port and _LIVE stay importable from here)
__all__ = ["_LIVE", "LlamaCppEngine", "LlamaServer", "LlamaServerError", "build", "cached_binary", "find_binary",
           "free_port", "spec_args"]


# ----------------------------------------------------------------------------------------------------- running


class LlamaServer(ServerProcess):
    """One llama-server process for ``model`` (a GGUF file) with extra ``args`` (e.g. ``["--spec-default"]``).

    ``with LlamaServer(gguf, ["--spec-type", "ngram-simple"]) as s: s.url`` — started on 127.0.0.1 (a free port
    unless ``port`` is given), ready when ``/health`` answers, stopped when the block ends, whatever ends it."""

    what = "llama-server"
    error = LlamaServerError
    death_signal = signal.SIGKILL  # it has no workers to stop, and once ignored a SIGTERM under load

    def __init__(self, model: str | os.PathLike, args: Sequence[str] = (), binary: str | os.PathLike | None = None,
                 threads: int | None = None, port: int | None = None, ready_timeout: float = 120.0,
                 context: int = 2048):
        super().__init__(port, ready_timeout)
        self.model, self.args = Path(model), list(args)
        self.binary = find_binary(binary)
        self.threads = threads or server_threads()
        self.context = context

    def command(self) -> list[str]:
        return [str(self.binary), "-m", str(self.model), "--host", "127.0.0.1", "--port", str(self.port),
                "--metrics", "--no-webui", "-t", str(self.threads), "-c", str(self.context), "-np", "1",
                *self.args]

    def check(self) -> None:
        if not self.model.is_file():
            raise LlamaServerError(f"model: {self.model} does not exist (a GGUF file; the embedded one is "
                                   "labkit.models.embedded.gguf_path())")

    def healthy(self, status: int, body: str) -> bool:
        return status == 200 and json.loads(body).get("status") == "ok"

    def crash_hint(self, code: int | None) -> str:
        return crash_hint(code)

    def start(self, progress: Any = None) -> LlamaServer:
        super().start(progress)
        return self

    def __repr__(self) -> str:
        return f"LlamaServer({self.model.name}, {' '.join(self.args) or 'plain'}, {self.url})"



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


class LlamaCppEngine(ServedEngine):
    """A llama-server for one configuration behind the engine protocol: started on construction (a free port on
    127.0.0.1), stopped by ``close()``, by ``with``, or when Python exits."""

    def __init__(self, model: str | os.PathLike, method: str = "plain", k: int = 0, binary: str | None = None,
                 threads: int | None = None, extra: Sequence[str] = ()):
        self.name = f"llama.cpp {method}" + (f" k={k}" if k else "")
        self.server = LlamaServer(model, [*spec_args(method, k), *extra], binary=binary, threads=threads).start()
        self._connect()
