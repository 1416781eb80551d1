"""A serving engine over HTTP: an OpenAI-compatible completion API plus Prometheus ``/metrics``.

llama.cpp's ``llama-server`` (``--metrics``), vLLM and SGLang all speak it. Speculative-decoding counters come from
``/metrics`` under each engine's prefix (``llamacpp:spec_decode_*``, ``vllm:spec_decode_*``), read before and after a
request: their difference is the request's Counts (labkit.core.metrics), with the servers' own names. llama.cpp also
returns per-request ``timings`` (``draft_n``, ``draft_n_accepted``, ``predicted_n``, ``predicted_ms``) and vLLM, with
``--per-request-spec-decode-metrics summary``, ``metrics.speculative_decoding``; both are kept in ``EngineRun.raw``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from labkit.core.metrics import Counts, from_engine_counters
from labkit.core.verify_cost import VerifyCost
from labkit.engines.base import EngineError, EngineRun

PREFIXES = ("llamacpp:", "vllm:")  # spec-decode counter prefixes, tried in this order
COUNTERS = {"drafts": "spec_decode_num_drafts", "draft_tokens": "spec_decode_num_draft_tokens",
            "accepted": "spec_decode_num_accepted_tokens"}
PER_POS = "spec_decode_num_accepted_tokens_per_pos"


class ServerError(EngineError):
    """A server that cannot be reached or answers wrongly: one line naming the fix."""


def spec_counters(exposition: str) -> Counts:
    """Counts from a Prometheus exposition (the text of ``/metrics``): the spec-decode counters of llama.cpp or vLLM,
    summed over label sets (vLLM labels by model and engine), per position by the ``position`` label (0-based)."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    per_pos: dict[int, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            name = sample.name.removesuffix("_total")
            prefix = next((p for p in PREFIXES if name.startswith(p)), None)
            if prefix is None:
                continue
            bare = name[len(prefix):]
            if bare == PER_POS and "position" in sample.labels:
                pos = int(sample.labels["position"])
                per_pos[pos] = per_pos.get(pos, 0.0) + sample.value
            for key, counter in COUNTERS.items():
                if bare == counter:
                    found[key] = found.get(key, 0.0) + sample.value
    positions = [int(per_pos.get(i, 0)) for i in range(max(per_pos) + 1)] if per_pos else []
    return from_engine_counters(int(found.get("drafts", 0)), int(found.get("draft_tokens", 0)),
                                int(found.get("accepted", 0)), positions)


def difference(after: Counts, before: Counts) -> Counts:
    """The counters a request added (after - before), per position too."""
    n = max(len(after.accepted_per_pos), len(before.accepted_per_pos))
    pos = tuple((after.accepted_per_pos[i] if i < len(after.accepted_per_pos) else 0)
                - (before.accepted_per_pos[i] if i < len(before.accepted_per_pos) else 0) for i in range(n))
    return Counts(drafts=after.drafts - before.drafts, draft_tokens=after.draft_tokens - before.draft_tokens,
                  accepted=after.accepted - before.accepted, accepted_per_pos=pos)


class ServerEngine:
    """A running server at ``url`` (``http://127.0.0.1:8080``): llama.cpp's native ``/completion`` when the server
    is llama.cpp, else the OpenAI ``/v1/completions``; greedy, exactly ``max_new_tokens`` (EOS ignored)."""

    def __init__(self, url: str, name: str = "server", timeout: float = 300.0, model: str | None = None):
        self.url, self.name, self.timeout, self.model = url.rstrip("/"), name, timeout, model
        self.kind = self._probe()

    # ------------------------------------------------------------------------------------------------- HTTP

    def _request(self, path: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read().decode()
        except urllib.error.HTTPError as e:
            raise ServerError(f"{self.url}{path}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ServerError(f"{self.url}: cannot reach the server ({reason}); is it running? Start one, or pass "
                              "the URL of a running llama-server / vLLM") from None
        return raw if path == "/metrics" else json.loads(raw)

    def _probe(self) -> str:
        """"llama.cpp" (it has /props) or "openai" (vLLM, SGLang)."""
        try:
            props = self._request("/props", timeout=5.0)
            if isinstance(props, dict) and ("default_generation_settings" in props or "build_info" in props):
                return "llama.cpp"
        except ServerError:
            self._request("/v1/models", timeout=5.0)  # neither: an unreachable server says so here
        return "openai"

    def tokenize(self, text: str) -> list[int]:
        """The server's own tokenization of ``text`` (llama.cpp's /tokenize)."""
        return list(self._request("/tokenize", {"content": text})["tokens"])

    def metrics_text(self) -> str:
        """The raw Prometheus exposition (llama-server needs ``--metrics``)."""
        return self._request("/metrics")

    def counters(self) -> Counts:
        return spec_counters(self.metrics_text())

    # ------------------------------------------------------------------------------------------------- running

    def run(self, prompt: Any, max_new_tokens: int, top: int = 0) -> EngineRun:
        """One greedy request; ``top`` > 0 also asks for each token's top log-probabilities (llama.cpp:
        ``raw["probs"]``; an accepted draft's are not the target's, llama.cpp reports it as certain)."""
        before = self.counters()
        t0 = time.perf_counter()
        out = self._complete(prompt, max_new_tokens, top)
        seconds = time.perf_counter() - t0
        served = difference(self.counters(), before)
        tokens, text, raw = self._parse(out)
        n = len(tokens) if tokens is not None else int(raw.get("predicted_n", raw.get("completion_tokens", 0)))
        decode_s = float(raw.get("predicted_ms", 0.0)) / 1e3  # llama.cpp's own decoding time (prefill apart)
        counts = from_engine_counters(served.drafts, served.draft_tokens, served.accepted, served.accepted_per_pos,
                                      new_tokens=n, wall_seconds=seconds, runs=1, decode_seconds=decode_s)
        return EngineRun(self.name, tokens, text, counts, seconds, raw)

    def _complete(self, prompt: Any, n: int, top: int = 0) -> dict[str, Any]:
        if self.kind == "llama.cpp":
            body = {"prompt": prompt if isinstance(prompt, str) else list(map(int, prompt)), "n_predict": n,
                    "temperature": 0.0, "top_k": 1, "ignore_eos": True, "cache_prompt": False,
                    "return_tokens": True, "stream": False, **({"n_probs": top} if top else {})}
            return self._request("/completion", body)
        body = {"model": self.model or "default", "prompt": prompt if isinstance(prompt, str) else list(prompt),
                "max_tokens": n, "min_tokens": n, "temperature": 0.0, "ignore_eos": True, "return_token_ids": True}
        return self._request("/v1/completions", body)

    def _parse(self, out: dict[str, Any]) -> tuple[list[int] | None, str | None, dict[str, Any]]:
        if self.kind == "llama.cpp":
            raw = dict(out.get("timings") or {})
            if out.get("completion_probabilities"):
                raw["probs"] = [{t["id"]: t["logprob"] for t in p.get("top_logprobs", [])}
                                for p in out["completion_probabilities"]]
            return out.get("tokens"), out.get("content"), raw
        choice = (out.get("choices") or [{}])[0]
        raw = dict((out.get("metrics") or {}).get("speculative_decoding") or {})
        if (out.get("usage") or {}).get("completion_tokens") is not None:  # the token count where ids are not sent
            raw["completion_tokens"] = int(out["usage"]["completion_tokens"])
        return choice.get("token_ids"), choice.get("text"), raw

    def verify_cost(self, ks: list[int], rounds: int = 5, seed: int = 0, vocab: int = 30000) -> VerifyCost:
        """llama.cpp's own T(k+1)/T(1) by draft length k: the server's ``timings.prompt_ms`` for one batch of
        n = k + 1 tokens (the work of a verify over n tokens) against one of 1 token, interleaved over ``rounds``;
        the medians of the per-round ratios with their interquartile ranges. Each batch is fresh random tokens on
        an empty cache: Gemma 3's sliding-window cache cannot be rolled back to an arbitrary prefix in llama.cpp, so
        a cached prefix would be partly processed again. ``prompt_n`` is checked against n (one more where the
        server adds a BOS token)."""
        import random

        from labkit.core.stats import ratio_summary

        if self.kind != "llama.cpp":
            raise ServerError(f"{self.url}: verify cost needs llama.cpp's per-request timings (prompt_ms)")
        rng = random.Random(seed)
        body = {"n_predict": 1, "temperature": 0.0, "cache_prompt": False, "stream": False}
        ns = sorted({1, *(k + 1 for k in ks if k > 0)})
        ms: dict[int, list[float]] = {n: [] for n in ns}
        for rep in range(rounds + 1):  # the first round warms up each batch size
            order = list(ns)
            rng.shuffle(order)
            for n in order:
                extra = [rng.randrange(100, vocab) for _ in range(n)]
                t = self._request("/completion", {**body, "prompt": extra})["timings"]
                if int(t["prompt_n"]) not in (n, n + 1):
                    raise ServerError(f"{self.url}: asked for a batch of {n} tokens, the server processed "
                                      f"{t['prompt_n']}")
                if rep:
                    ms[n].append(float(t["prompt_ms"]))
        summary = {n - 1: ratio_summary(v, ms[1]) for n, v in ms.items() if n > 1}
        return VerifyCost.from_measured({k: r for k, (r, _) in summary.items()},
                                        {k: spread for k, (_, spread) in summary.items()},
                                        source=f"llama.cpp timings.prompt_ms, {rounds} interleaved rounds",
                                        where=f"{self.kind} at {self.url}")

    def close(self) -> None:
        """Nothing to release: the server belongs to whoever started it."""
