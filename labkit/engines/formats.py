"""Every serving engine's speculative-decoding figures, read into one vocabulary: ``labkit.core.metrics.Counts``.

One function per format. Each names where its field names come from, maps what the engine exposes onto Counts, and
leaves what it does not expose at 0 (its docstring says which). Where an engine gives only a rate or a mean, a count
is derived only where the derivation is exact, and the docstring says so; every ratio is then computed by
``labkit.core.metrics`` from the counts, never copied from the engine.

In Counts terms: ``drafts`` = verify steps that had a draft (vLLM's ``num_drafts``), ``draft_tokens`` = tokens
proposed, ``accepted`` = draft tokens accepted, ``accepted_per_pos[i]`` = drafts whose position i was accepted,
``new_tokens`` = tokens emitted, ``rounds`` = verify forwards. An acceptance histogram ``H[n]`` = verify steps that
accepted exactly n draft tokens gives the per-position counts exactly: position i was accepted in every step with
n > i.

Run against the real server here: llama.cpp (``/metrics`` and ``timings``, tests/test_llama_cpp.py). vLLM's
``/metrics`` and ``metrics.speculative_decoding`` were read from a live vLLM by hand (issue 24). The others are read
from their documentation and source only (tests/test_formats.py: fixtures written by hand from the field names).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from labkit.core.metrics import Counts, from_engine_counters, round_counts

PREFIXES = ("llamacpp:", "vllm:")  # Prometheus spec-decode counter prefixes, tried in this order
COUNTERS = {"drafts": "spec_decode_num_drafts", "draft_tokens": "spec_decode_num_draft_tokens",
            "accepted": "spec_decode_num_accepted_tokens"}
PER_POS = "spec_decode_num_accepted_tokens_per_pos"


def per_pos_from_histogram(hist: Mapping[Any, Any] | Sequence[Any] | None) -> tuple[int, ...]:
    """Accepted per position from an acceptance histogram, ``H[n]`` = steps that accepted exactly n draft tokens
    (a list indexed by n, or a map n -> steps with int or string keys): position i (0-based) was accepted in every
    step with n > i. Exact."""
    if not hist:
        return ()
    items = hist.items() if isinstance(hist, Mapping) else enumerate(hist)
    by_n = {int(n): int(steps) for n, steps in items}
    top = max((n for n, steps in by_n.items() if steps), default=0)
    return tuple(sum(steps for n, steps in by_n.items() if n > i) for i in range(top))


def _histogram_accepted(hist: Mapping[Any, Any] | Sequence[Any]) -> int:
    """Accepted draft tokens of an acceptance histogram: the sum of n H[n]."""
    items = hist.items() if isinstance(hist, Mapping) else enumerate(hist)
    return sum(int(n) * int(steps) for n, steps in items)


def _steps(drafted: Sequence[int], accepted: Sequence[int]) -> Counts:
    """Counts from per-step (drafted, accepted) pairs through core.metrics.round_counts, the formula labkit's own
    rounds go through: every labkit-only counter is exact here (rejections, reach and proposals per position)."""
    steps = [SimpleNamespace(drafted=range(int(d)), accepted=int(a), emitted=(), draft_seconds=0.0,
                             verify_seconds=0.0, rejected_at=int(a) if int(a) < int(d) else None)
             for d, a in zip(drafted, accepted, strict=True)]
    return sum((round_counts(step) for step in steps), Counts())


# ------------------------------------------------------------------------------------ llama.cpp and vLLM


def spec_counters(exposition: str) -> Counts:
    """The spec-decode counters of a Prometheus exposition (the text of ``/metrics``), llama.cpp's
    (``llamacpp:spec_decode_*``, ``tools/server``, needs ``--metrics``) or vLLM's (``vllm:spec_decode_*``,
    ``vllm/v1/spec_decode/metrics.py``): ``num_drafts``, ``num_draft_tokens``, ``num_accepted_tokens`` and
    ``num_accepted_tokens_per_pos{position}`` (0-based), summed over label sets (vLLM labels by model and engine).
    Cumulative since the server started: a request's counts are the difference before/after it. Not exposed: new
    tokens, rounds, timings (the response has them)."""
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


def timings(t: Mapping[str, Any]) -> Counts:
    """A response's ``timings`` from llama.cpp's server (``tools/server``: ``predicted_n``, ``predicted_ms``,
    ``draft_n``, ``draft_n_accepted``) or mlx-vlm's server (the same ``draft_n``, ``draft_n_accepted``, PR 1788).
    ``predicted_ms`` (decoding, prefill excluded) becomes verify time. Not exposed: the number of verify steps
    that drafted (``drafts``), so the mean acceptance length needs ``/metrics``; nothing per position. Rounds
    follow from new tokens - accepted (core.metrics.from_engine_counters)."""
    return from_engine_counters(0, int(t.get("draft_n", 0)), int(t.get("draft_n_accepted", 0)),
                                new_tokens=int(t.get("predicted_n", 0)),
                                decode_seconds=float(t.get("predicted_ms", 0.0)) / 1e3)


def vllm_request(spec: Mapping[str, Any] | None, usage: Mapping[str, Any] | None = None) -> Counts:
    """vLLM's per-request ``metrics.speculative_decoding`` (``--per-request-spec-decode-metrics summary|detailed``;
    docs ``features/speculative_decoding/acceptance_metrics``): ``num_spec_steps`` (verify steps with a draft:
    drafts), ``num_draft_tokens``, ``num_accepted_draft_tokens``, ``acceptance_histogram`` (``{accepted: steps}``,
    bonus excluded: accepted per position, exact); ``detailed`` adds ``per_step_drafted`` and
    ``per_step_accepted``, from which rejections and reach per position are exact too. ``usage.completion_tokens``
    gives new tokens, and rounds = new tokens - accepted. ``mean_acceptance_length`` and
    ``draft_acceptance_rate`` are vLLM's own ratios: labkit recomputes them from these counts. Not exposed: timings
    (no decode time: end-to-end tok/s only)."""
    spec = spec or {}
    n = int((usage or {}).get("completion_tokens", 0) or 0)
    if spec.get("per_step_drafted") is not None and spec.get("per_step_accepted") is not None:
        steps = _steps(spec["per_step_drafted"], spec["per_step_accepted"])
        return replace(steps, new_tokens=n, rounds=max(0, n - steps.accepted) if n else 0)
    return from_engine_counters(int(spec.get("num_spec_steps", 0)), int(spec.get("num_draft_tokens", 0)),
                                int(spec.get("num_accepted_draft_tokens", 0)),
                                per_pos_from_histogram(spec.get("acceptance_histogram")), new_tokens=n)


# ------------------------------------------------------------------------------------ parsed from documentation


def sglang_meta_info(meta: Mapping[str, Any], draft_tokens_per_step: int | None = None) -> Counts:
    """SGLang's per-request ``meta_info`` (``/generate``; ``tokenizer_manager``): ``spec_verify_ct`` (verify
    forwards: every decode step drafts under SGLang's speculative algorithms, so drafts = rounds = verify_ct),
    ``completion_tokens``, ``spec_accept_histogram`` (a list, H[n] = verify steps that accepted exactly n draft
    tokens), ``spec_accept_length`` (1 + accepted / verify_ct, a mean) and ``spec_accept_rate`` (accepted / proposed, a
    rate). new tokens = ``completion_tokens`` (it includes the token of the prefill: tokens per verify is high by at
    most one token per request, as in core.metrics.from_engine_counters).

    accepted: from the histogram (sum n H[n]) when present, else newer releases' ``spec_accept_token_num``, else
    round((``spec_accept_length`` - 1) x verify_ct), the accept length being 1 + accepted / verify_ct; each exact.
    Draft tokens: newer releases' ``spec_draft_token_num`` when present, else verify_ct x
    ``draft_tokens_per_step`` when the caller knows the draft length is fixed (a chain of ``--speculative-num-steps``),
    else 0: it cannot be recovered exactly from the rounded rate. Not exposed: timings (``e2e_latency`` includes
    prefill)."""
    ct = int(meta.get("spec_verify_ct", 0) or 0)
    n = int(meta.get("completion_tokens", 0) or 0)
    hist = meta.get("spec_accept_histogram")
    if hist:
        accepted = _histogram_accepted(hist)
    elif "spec_accept_token_num" in meta:
        accepted = int(meta["spec_accept_token_num"])
    else:
        accepted = max(0, round((float(meta.get("spec_accept_length", 0.0) or 0.0) - 1) * ct)) if ct else 0
    drafted = int(meta.get("spec_draft_token_num", 0) or 0) or ct * (draft_tokens_per_step or 0)
    c = from_engine_counters(ct, drafted, accepted, per_pos_from_histogram(hist), new_tokens=n)
    return replace(c, rounds=ct)


def sglang_gauges(exposition: str) -> dict[str, float]:
    """SGLang's Prometheus gauges (``--enable-metrics``): ``sglang:spec_accept_length`` and
    ``sglang:spec_accept_rate``, the server's recent averages, as ``{"spec_accept_length": ..., "spec_accept_rate":
    ...}`` (averaged over label sets). Gauges, not counters: no Counts can be derived from them (no totals, no
    window length); use ``sglang_meta_info`` per request for counts."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name in ("sglang:spec_accept_length", "sglang:spec_accept_rate"):
                values.setdefault(sample.name.removeprefix("sglang:"), []).append(sample.value)
    return {k: sum(v) / len(v) for k, v in values.items()}


def lmstudio_stats(stats: Mapping[str, Any], usage: Mapping[str, Any] | None = None) -> Counts:
    """LM Studio's REST API ``/api/v0`` response ``stats`` (its docs, "LM Studio REST API"; SDK
    ``LLMPredictionStats``): ``total_draft_tokens_count`` (draft tokens), ``accepted_draft_tokens_count``
    (accepted); ``rejected_draft_tokens_count``, ``ignored_draft_tokens_count`` and ``draft_model`` have no Counts
    field and stay in the caller's raw figures. ``usage.completion_tokens`` gives new tokens; rounds = new tokens -
    accepted. Not exposed: the number of verify steps (drafts: the mean acceptance length is unknown), anything per
    position, a prefill-free decode time (``generation_time`` is not documented as one)."""
    n = int((usage or {}).get("completion_tokens", 0) or 0)
    return from_engine_counters(0, int(stats.get("total_draft_tokens_count", 0) or 0),
                                int(stats.get("accepted_draft_tokens_count", 0) or 0), new_tokens=n)


OLLAMA_LINE = re.compile(r"draft acceptance\s*=\s*([0-9]*\.?[0-9]+)\s*(%?)")


def ollama_response(resp: Mapping[str, Any]) -> Counts:
    """Ollama's ``/api/generate`` final response (its API docs): ``eval_count`` (new tokens), ``eval_duration``
    (decoding, ns), ``prompt_eval_duration`` (prefill, ns), ``total_duration`` (ns). That is all its API says of a
    speculative request: drafts, draft tokens, accepted tokens and rounds are NOT exposed and stay 0 (the draft
    length option ``draft_num_predict`` is a maximum, not a count). The acceptance rate is only in the server log:
    ``ollama_log_acceptance``."""
    return Counts(new_tokens=int(resp.get("eval_count", 0) or 0),
                  verify_seconds=float(resp.get("eval_duration", 0) or 0) / 1e9,
                  prefill_seconds=float(resp.get("prompt_eval_duration", 0) or 0) / 1e9,
                  wall_seconds=float(resp.get("total_duration", 0) or 0) / 1e9, runs=1)


def ollama_log_acceptance(log: str | Iterable[str]) -> list[float]:
    """The draft acceptance rate of each ``draft acceptance = X`` line of Ollama's server log (printed after each
    speculative request by its MLX runner, PR 15980), as fractions (``73%`` and ``0.73`` both give 0.73). A rate
    only: no count can be derived from it (the number of draft tokens is not logged), so it stays outside Counts,
    and pooling several requests' rates would weight them wrongly: report them per request."""
    lines = log.splitlines() if isinstance(log, str) else log
    out = []
    for line in lines:
        if m := OLLAMA_LINE.search(line):
            value = float(m.group(1))
            out.append(value / 100 if m.group(2) else value)
    return out


def mlx_from_draft(from_draft: Sequence[bool], draft_tokens_per_step: int | None = None) -> Counts:
    """mlx-lm's ``stream_generate`` with a ``draft_model``: each ``GenerationResponse`` has ``from_draft`` (the token
    was a draft token the target accepted). A verify step emits its accepted draft tokens, then one token of the
    target's own (``from_draft`` False), so each False closes one step (a trailing run of True is a step cut at the
    budget): rounds = drafts = steps, accepted = count of True, and each step's accepted count gives accepted per
    position exactly. Draft tokens: steps x ``draft_tokens_per_step`` (``--num-draft-tokens``) when given, an upper
    bound (mlx-lm shortens the last drafts at the budget), else 0. Not exposed: timings per step, rejections
    (without the draft length, a step that accepted all its drafts and one that rejected the next look the same)."""
    runs, run = [], 0
    for flag in from_draft:
        if flag:
            run += 1
        else:
            runs.append(run)
            run = 0
    if run:
        runs.append(run)
    hist: dict[int, int] = {}
    for a in runs:
        hist[a] = hist.get(a, 0) + 1
    steps = len(runs)
    return Counts(drafts=steps, draft_tokens=steps * (draft_tokens_per_step or 0), accepted=sum(runs),
                  accepted_per_pos=per_pos_from_histogram(hist), new_tokens=len(from_draft), rounds=steps,
                  runs=int(bool(from_draft)))


def tensorrt_llm_iterations(iterations: Iterable[Mapping[str, Any]]) -> Counts:
    """TensorRT-LLM's ``/metrics`` JSON (``trtllm-serve`` with ``enable_iter_perf_stats``): a list of iteration
    stats, each with ``iterLatencyMS`` and ``specDecodingStats``: ``numDraftTokens``, ``numAcceptedTokens``,
    ``numRequestsWithDraftTokens`` (each such request had one verify step with a draft in that iteration: summed,
    drafts, exact), ``acceptanceLength`` (a mean, recomputed by labkit instead) and ``draftOverhead`` (the share of
    the iteration spent drafting: draft seconds = overhead x latency, the rest verify seconds; an iteration's time
    covers every request in the batch and any prefill in it). Not exposed: new tokens, rounds, anything per
    position; summed over whatever requests ran in those iterations."""
    c = Counts()
    for it in iterations:
        s = it.get("specDecodingStats") or {}
        secs = float(it.get("iterLatencyMS", 0.0) or 0.0) / 1e3
        overhead = float(s.get("draftOverhead", 0.0) or 0.0)
        c = c + Counts(drafts=int(s.get("numRequestsWithDraftTokens", 0) or 0),
                       draft_tokens=int(s.get("numDraftTokens", 0) or 0),
                       accepted=int(s.get("numAcceptedTokens", 0) or 0),
                       draft_seconds=overhead * secs if s else 0.0, verify_seconds=(1 - overhead) * secs if s else 0.0)
    return c
