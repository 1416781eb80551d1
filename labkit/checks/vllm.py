"""vLLM, where it is installed (a GPU machine): serve the embedded model with its n-gram drafter and read the
spec-decode counters through labkit's server engine. Run by scripts/gpu_check.sh (``labkit vllm-check``)
when ``import vllm`` works.

Not run here: this project's CPU machine has no vLLM. The parser it relies on is tested on the exposition format
vLLM documents (tests/test_engines.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from labkit.core import metrics


def serve(model: Path, port: int, k: int) -> subprocess.Popen:
    spec = json.dumps({"method": "ngram", "num_speculative_tokens": k, "prompt_lookup_min": 2,
                       "prompt_lookup_max": 4})
    return subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
                             "--port", str(port), "--host", "127.0.0.1", "--speculative-config", spec,
                             "--per-request-spec-decode-metrics", "summary", "--max-model-len", "2048"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def run(k: int = 4, tokens: int = 64, timeout: float = 300, out: str | None = None) -> int:
    """Serve the embedded model with vLLM's n-gram drafter at ``k``, run the bench prompts (one per category) and
    print the spec-decode counters; 0 when it served, 1 when it did not."""
    from labkit.engines.process import free_port
    from labkit.engines.server import ServerEngine
    from labkit.measure.prompts import prompt_set
    from labkit.models.embedded import prepare_embedded

    model = prepare_embedded("gemma3-270m", progress=False)  # a Hugging Face folder vLLM can load
    port = free_port()
    proc = serve(model, port, k)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                print(f"vllm: the server exited at start (code {proc.returncode})", file=sys.stderr)
                return 1
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                time.sleep(1)
        else:
            print(f"vllm: no /health within {timeout:.0f} s", file=sys.stderr)
            return 1
        eng = ServerEngine(f"http://127.0.0.1:{port}", name="vllm ngram", model=str(model))
        runs = [eng.run(ps[0], tokens) for ps in prompt_set().values()]
        m = metrics.metrics(r.counts for r in runs)
        per_request = [r.raw.get("mean_acceptance_length") for r in runs]
        result = {"k": k, "metrics": m.as_dict(), "per_request_mean_acceptance_length": per_request}
        print(f"vLLM ngram k={k}: mean acceptance length {m.mean_acceptance_length}, draft acceptance rate "
              f"{m.draft_acceptance_rate}, acceptance by position {m.acceptance_by_position} (from /metrics deltas); "
              f"per request (metrics.speculative_decoding): {per_request}")
        if out:
            Path(out).write_text(json.dumps(result, indent=1))
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

