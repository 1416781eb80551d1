"""A serving engine over HTTP: a server the user (or labkit) runs, read into labkit.core.metrics Counts.

llama.cpp's ``llama-server`` (``--metrics``) and vLLM: spec-decode counters from ``/metrics`` under each engine's
prefix (``llamacpp:spec_decode_*``, ``vllm:spec_decode_*``), read before and after a request: their difference is
the request's Counts, with the servers' own names; new tokens and decode time from the response (llama.cpp's
``timings``, vLLM's ``usage``). SGLang (``meta_info``) and LM Studio (``stats``) report per request only. Each
engine's own per-request figures are kept in ``EngineRun.raw``; the parsers are ``labkit.engines.formats``"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import replace
from typing import Any

from labkit.core.metrics import Counts, from_engine_counters
from labkit.core.verify_cost import VerifyCost
from labkit.engines import formats
from labkit.engines.base import EngineError, EngineRun
from labkit.engines.formats import spec_counters

KINDS = ("llama.cpp", "vllm", "sglang", "lmstudio")  # what a user may name; "openai" is any other, detected
SCRAPED = ("llama.cpp", "vllm", "openai")  # kinds whose spec-decode figures are /metrics counters


class ServerError(EngineError):
    """A server that cannot be reached or answers wrongly: one line naming the fix."""

    status: int | None = None  # the HTTP status when the server answered (wrongly); None when it did not answer


def difference(after: Counts, before: Counts) -> Counts:
    """The counters a request added (after - before), per position too."""
    n = max(len(after.accepted_per_pos), len(before.accepted_per_pos))
    pos = tuple((after.accepted_per_pos[i] if i < len(after.accepted_per_pos) else 0)
                - (before.accepted_per_pos[i] if i < len(before.accepted_per_pos) else 0) for i in range(n))
    return Counts(drafts=after.drafts - before.drafts, draft_tokens=after.draft_tokens - before.draft_tokens,
                  accepted=after.accepted - before.accepted, accepted_per_pos=pos)


class ServerEngine:
    """A running server at ``url`` (``http://127.0.0.1:8080``), greedy, exactly ``max_new_tokens`` (EOS ignored).

    ``kind`` says which server it is, and so which API and which figures: ``llama.cpp`` (native ``/completion``,
    ``timings`` and ``/metrics``), ``vllm`` (``/v1/completions``, ``/metrics`` and ``metrics.speculative_decoding``),
    ``sglang`` (native ``/generate`` and its ``meta_info``), ``lmstudio`` (``/api/v0/completions`` and its
    ``stats``). Left out, it is detected: llama.cpp by its ``/props``, vLLM and SGLang by ``owned_by`` in
    ``/v1/models``, else "openai" (any OpenAI-compatible server, read as vLLM is). A wrong kind or an unreachable URL
    is one line (ServerError). The parsers are ``labkit.engines.formats``."""

    def __init__(self, url: str, name: str = "server", timeout: float = 300.0, model: str | None = None,
                 kind: str | None = None):
        self.url, self.name, self.timeout, self.model = url.rstrip("/"), name, timeout, model
        if kind is not None and kind not in KINDS:
            raise ServerError(f"unknown server kind {kind!r}: use one of {', '.join(KINDS)}")
        self.kind = self._probe() if kind is None else self._check(kind)

    # ------------------------------------------------------------------------------------------------- HTTP

    def _request(self, path: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read().decode()
        except urllib.error.HTTPError as e:
            err = ServerError(f"{self.url}{path}: HTTP {e.code} {e.reason}")
            err.status = e.code
            raise err from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ServerError(f"{self.url}: cannot reach the server ({reason}); is it running? Start one, or pass "
                              "the URL of a running llama-server / vLLM / SGLang / LM Studio") from None
        if path == "/metrics":
            return raw
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            err = ServerError(f"{self.url}{path}: the answer is not JSON; is this the server's URL?")
            err.status = 200  # it answered, wrongly
            raise err from None

    def _probe(self) -> str:
        """"llama.cpp" (it has /props), "vllm" or "sglang" (``owned_by`` in /v1/models), "lmstudio" (it has
        /api/v0/models), else "openai"."""
        try:
            props = self._request("/props", timeout=5.0)
            if isinstance(props, dict) and ("default_generation_settings" in props or "build_info" in props):
                return "llama.cpp"
        except ServerError as e:
            if e.status is None:
                raise
        models = self._request("/v1/models", timeout=5.0)  # neither: an unreachable server says so here
        owners = {m.get("owned_by") for m in (models.get("data") or [])} if isinstance(models, dict) else set()
        kind = next((k for k in ("vllm", "sglang") if k in owners), None)
        return kind or ("lmstudio" if self._answers("lmstudio") else "openai")

    def _answers(self, kind: str) -> bool:
        """Whether the server answers ``kind``'s own endpoint as that kind does (an unreachable one raises)."""
        path, looks = {"llama.cpp": ("/props", lambda r: isinstance(r, dict) and "default_generation_settings" in r),
                       "vllm": ("/metrics", lambda r: "vllm:" in r),
                       "sglang": ("/get_model_info", lambda r: isinstance(r, dict) and "model_path" in r),
                       "lmstudio": ("/api/v0/models", lambda r: isinstance(r, dict) and "data" in r)}[kind]
        try:
            return bool(looks(self._request(path, timeout=5.0)))
        except ServerError as e:
            if e.status is None:
                raise  # unreachable: that line already says so
            return False

    def _check(self, kind: str) -> str:
        """``kind`` when the server answers as one, else one line naming the kinds."""
        if not self._answers(kind):
            raise ServerError(f"{self.url} does not answer as {kind}; pass the kind it is ({', '.join(KINDS)}) or "
                              "leave it out to detect it")
        return kind

    def tokenize(self, text: str) -> list[int]:
        """The server's own tokenization of ``text`` (llama.cpp's /tokenize)."""
        return list(self._request("/tokenize", {"content": text})["tokens"])

    def metrics_text(self) -> str:
        """The raw Prometheus exposition (llama-server needs ``--metrics``)."""
        return self._request("/metrics")

    def counters(self) -> Counts:
        return spec_counters(self.metrics_text())

    def _scrape(self) -> Counts | None:
        """The /metrics counters of a kind that has them; None for the others, and for an unknown OpenAI-compatible
        server without /metrics (its response's own figures are then all there is)."""
        if self.kind not in SCRAPED:
            return None
        try:
            return self.counters()
        except ServerError as e:
            if self.kind != "openai" or e.status is None:
                raise
            return None

    # ------------------------------------------------------------------------------------------------- running

    def run(self, prompt: Any, max_new_tokens: int, top: int = 0) -> EngineRun:
        """One greedy request; ``top`` > 0 also asks for each token's top log-probabilities (llama.cpp:
        ``raw["probs"]``; an accepted draft's are not the target's, llama.cpp reports it as certain). llama.cpp's
        and vLLM's spec-decode figures are their /metrics counters around the request; SGLang's and LM Studio's
        come with the response. New tokens and decode time come from the response for every kind."""
        before = self._scrape()
        t0 = time.perf_counter()
        out = self._complete(prompt, max_new_tokens, top)
        seconds = time.perf_counter() - t0
        tokens, text, raw, reply = self._parse(out)
        if before is not None:  # the counters' figures; new tokens counted from the tokens where they came back
            served = difference(self.counters(), before)
            n = len(tokens) if tokens is not None else reply.new_tokens
            reply = from_engine_counters(served.drafts, served.draft_tokens, served.accepted,
                                         served.accepted_per_pos, new_tokens=n, decode_seconds=reply.verify_seconds)
        return EngineRun(self.name, tokens, text, replace(reply, wall_seconds=seconds, runs=1), seconds, raw)

    def _complete(self, prompt: Any, n: int, top: int = 0) -> dict[str, Any]:
        text = isinstance(prompt, str)
        prompt = prompt if text else list(map(int, prompt))  # token ids: a list, a tensor or an array
        if self.kind == "llama.cpp":
            body = {"prompt": prompt, "n_predict": n,
                    "temperature": 0.0, "top_k": 1, "ignore_eos": True, "cache_prompt": False,
                    "return_tokens": True, "stream": False, **({"n_probs": top} if top else {})}
            return self._request("/completion", body)
        if self.kind == "sglang":
            params = {"max_new_tokens": n, "min_new_tokens": n, "temperature": 0.0, "ignore_eos": True}
            return self._request("/generate", {("text" if text else "input_ids"): prompt,
                                               "sampling_params": params})
        body = {"model": self.model or "default", "prompt": prompt,
                "max_tokens": n, "min_tokens": n, "temperature": 0.0, "ignore_eos": True}
        if self.kind != "lmstudio":  # vLLM returns the token ids only when asked
            body["return_token_ids"] = True
        return self._request("/api/v0/completions" if self.kind == "lmstudio" else "/v1/completions", body)

    def _parse(self, out: dict[str, Any]) -> tuple[list[int] | None, str | None, dict[str, Any], Counts]:
        """(tokens, text, the engine's own per-request figures, Counts from the response alone)."""
        if self.kind == "llama.cpp":
            raw = dict(out.get("timings") or {})
            if out.get("completion_probabilities"):
                raw["probs"] = [{t["id"]: t["logprob"] for t in p.get("top_logprobs", [])}
                                for p in out["completion_probabilities"]]
            return out.get("tokens"), out.get("content"), raw, formats.timings(raw)
        if self.kind == "sglang":
            raw = dict(out.get("meta_info") or {})
            return out.get("output_ids"), out.get("text"), raw, formats.sglang_meta_info(raw)
        choice, usage = (out.get("choices") or [{}])[0], out.get("usage") or {}
        if self.kind == "lmstudio":
            raw = dict(out.get("stats") or {})
            return choice.get("token_ids"), choice.get("text"), raw, formats.lmstudio_stats(raw, usage)
        raw = dict((out.get("metrics") or {}).get("speculative_decoding") or {})
        return choice.get("token_ids"), choice.get("text"), raw, formats.vllm_request(raw, usage)

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
