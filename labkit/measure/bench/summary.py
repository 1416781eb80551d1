"""Summarizing the bench: one typed row per (method, category) with labkit.core.metrics of its pooled runs and its
ratios to the baselines, the theory curves, the roofline columns and the int8 quality against bf16."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from labkit.core import metrics
from labkit.core.verify_cost import VerifyCost, as_verify_cost
from labkit.measure import theory
from labkit.measure.bench.run import RunRecord
from labkit.measure.bench.settings import HF_GREEDY, LABKIT_PLAIN, SERVED, Method

# the labkit.core.metrics quantities a row carries when the engine reports its rounds (glossary: docs/metrics.md)
ROUND_METRICS = ("tokens_per_verify", "mean_draft_length", "mean_acceptance_length", "draft_acceptance_rate",
                 "acceptance_by_position", "conditional_acceptance_by_position", "alpha", "draft_cost")
IDENTITY = ("engine", "method", "k", "decoding", "policy")  # what makes two rows one configuration


@dataclass
class Row:
    """One (method, category) row, or the method over "all" categories; bench.json and bench.csv write it as is
    (labkit.measure.report: CSV_COLUMNS). A quantity an engine does not expose is None."""

    engine: str
    method: str  # labkit: "plain" or a drafter spec; transformers: its mode; llama.cpp: its method
    k: int
    decoding: str = "greedy"
    policy: str = ""
    category: str = "all"
    end_to_end_tok_s: float | None = None  # median over repeats of each repeat's tokens/s pooled over its prompts
    tok_s_cpu: float | None = None  # the same over this process's CPU time (None for a server)
    runs: int = 0
    new_tokens: int = 0
    tokens_per_verify: float | None = None
    mean_draft_length: float | None = None
    mean_acceptance_length: float | None = None
    draft_acceptance_rate: float | None = None
    acceptance_by_position: list[float] | None = None
    conditional_acceptance_by_position: list[float | None] | None = None
    alpha: float | None = None
    draft_cost: float | None = None
    repetition: float | None = None
    same_as_hf_greedy: float | None = None  # share of first-repeat outputs equal to transformers' greedy tokens
    ratio_vs_hf_greedy: float | None = None
    ratio_cpu_vs_hf_greedy: float | None = None
    ratio_vs_plain: float | None = None  # against the same engine's plain decoding (transformers: labkit's)
    ratio_vs_llama_plain: float | None = None
    weight_gbps: float | None = None
    target_forward_gbps: float | None = None
    verify_cost: float | None = None  # llama.cpp synthetic rows: T(k+1)/T(1) with free drafts

    def same_configuration(self, other: Row) -> bool:
        return all(getattr(self, f) == getattr(other, f) for f in IDENTITY)


def _pool(runs: Iterable[RunRecord]) -> metrics.Counts:
    return metrics.counts(r.counts for r in runs)


def _tok_s(runs: list[RunRecord], cpu: bool = False) -> float | None:
    """End-to-end tok/s (labkit.core.metrics) of each repeat pooled over its prompts, median over repeats; ``cpu``
    divides by this process's CPU time instead of the wall time."""
    clock = [r.cpu_seconds if cpu else r.seconds for r in runs]
    if any(c is None for c in clock):
        return None
    per_rep: dict[int, list[tuple[RunRecord, float]]] = {}
    for r, c in zip(runs, clock, strict=True):
        per_rep.setdefault(r.repeat, []).append((r, c))
    return metrics.median_over(metrics.end_to_end_tok_s(_pool(r for r, _ in v), sum(c for _, c in v))
                               for v in per_rep.values())


def _same_as_greedy(runs: list[RunRecord], greedy: dict[tuple, list[int]]) -> float:
    first = [r for r in runs if r.repeat == 0]
    return sum(r.tokens == greedy.get((r.category, r.prompt)) for r in first) / len(first)


def _row(m: Method, cat: str, runs: list[RunRecord], greedy: dict[tuple, list[int]]) -> Row:
    """One (method, category) row: labkit.core.metrics of the pooled counts (engines that expose no rounds, like
    transformers, get None for the acceptance quantities), end-to-end tok/s as the median over repeats."""
    q = metrics.metrics(_pool(runs))
    rounds = all(r.has_rounds for r in runs) and bool(runs)
    reps = [r.repetition for r in runs if r.repetition is not None]
    return Row(m.engine, m.name, m.k, m.decoding, m.policy, cat, end_to_end_tok_s=_tok_s(runs),
               tok_s_cpu=_tok_s(runs, cpu=True), runs=len(runs), new_tokens=q.counts.new_tokens,
               **{name: getattr(q, name) if rounds else None for name in ROUND_METRICS},
               repetition=statistics.fmean(reps) if reps else None, same_as_hf_greedy=_same_as_greedy(runs, greedy))


def summarize(runs: list[RunRecord], methods: list[Method], categories: list[str]) -> list[Row]:
    """One row per (method, category) and per method over "all" categories, with ratios to transformers' greedy.

    The "all" row's ratio is the mean of the per-category ratios (each category weighs the same).
    """
    greedy = {(r.category, r.prompt): r.tokens for r in runs if r.method == HF_GREEDY.key and r.repeat == 0}
    rows = []
    for m in methods:
        mine = [r for r in runs if r.method == m.key]
        rows += [_row(m, c, [r for r in mine if r.category == c], greedy) for c in categories]
        rows.append(_row(m, "all", mine, greedy))
    hf_greedy = lambda r: r.engine == "transformers" and r.method == "greedy"  # noqa: E731
    _ratios(rows, "end_to_end_tok_s", "ratio_vs_hf_greedy", hf_greedy)
    _ratios(rows, "tok_s_cpu", "ratio_cpu_vs_hf_greedy", hf_greedy)
    for decoding in dict.fromkeys(r.decoding for r in rows):
        _ratios(rows, "end_to_end_tok_s", "ratio_vs_plain",
                lambda r, d=decoding: r.engine == "labkit" and r.method == "plain" and r.decoding == d,
                only=lambda r, d=decoding: r.decoding == d and r.engine not in SERVED)
    # a server (llama.cpp, vLLM) against its own plain decoding, and every row against llama.cpp's plain decoding
    for engine in SERVED:
        _ratios(rows, "end_to_end_tok_s", "ratio_vs_plain", lambda r, e=engine: r.engine == e and r.method == "plain",
                only=lambda r, e=engine: r.engine == e)
    llama_plain = lambda r: r.engine == "llama.cpp" and r.method == "plain"  # noqa: E731
    _ratios(rows, "end_to_end_tok_s", "ratio_vs_llama_plain", llama_plain)
    return rows


def _ratios(rows: list[Row], speed: str, ratio: str, is_base: Callable[[Row], bool],
            only: Callable[[Row], bool] = lambda r: True) -> None:
    """Each row's ``speed`` over the base row's of its category; the "all" row takes the mean of its categories'."""
    base = {r.category: getattr(r, speed) for r in rows if is_base(r)}
    if not base:
        return
    rows = [r for r in rows if only(r)]
    for r in rows:
        if r.category != "all":
            mine, theirs = getattr(r, speed), base[r.category]
            setattr(r, ratio, metrics.speedup(mine, theirs))
    for r in rows:
        if r.category == "all":
            cats = [getattr(x, ratio) for x in rows if x.category != "all" and x.same_configuration(r)]
            setattr(r, ratio, sum(cats) / len(cats) if None not in cats else None)


def theory_curves(rows: list[Row], k_max: int = 16, verify_cost: VerifyCost | None = None
                  ) -> list[dict[str, Any]]:
    """Per labkit drafter: alpha and c (labkit.core.metrics, median over its fixed-k rows), the speedup
    labkit.measure.theory predicts for k = 0..k_max on this run's verify-cost curve (None: a free verify), and what
    was measured."""
    # alpha^i holds for greedy acceptance at one k: sampled rows and dynamic-k rows stay out
    rows = [r for r in rows if r.decoding == "greedy" and not r.policy]
    cost = as_verify_cost(verify_cost)
    plain = {r.category: r.end_to_end_tok_s for r in rows if r.engine == "labkit" and r.method == "plain"}
    out = []
    for name in dict.fromkeys(r.method for r in rows if r.engine == "labkit" and r.k > 0):
        mine = [r for r in rows if r.engine == "labkit" and r.method == name and r.category == "all"]
        alphas = [r.alpha for r in mine if r.alpha is not None]
        costs = [r.draft_cost for r in mine if r.draft_cost is not None]
        if not alphas:
            continue
        a, c = statistics.median(alphas), statistics.median(costs) if costs else 0.0
        out.append({"drafter": name, "alpha": a, "c": c,
                    "curve": [{"k": k, "speedup": theory.expected_speedup(a, k, c, cost.at(k))}
                              for k in range(k_max + 1)],
                    "best_k": theory.best_k(a, c, k_max, VerifyCost(cost.upto(k_max)))[0],
                    "measured": [{"k": r.k, "speedup": metrics.speedup(r.end_to_end_tok_s, plain["all"])} for r in mine]
                    if plain else []})
    return out


def counter_check(runs: list[RunRecord]) -> dict[str, int] | None:
    """How many served requests' own figures (llama.cpp's timings.draft_n / draft_n_accepted, vLLM's
    metrics.speculative_decoding) equal the /metrics counter deltas of the same request; None when no engine reported
    both."""
    checked = [r.counters_agree for r in runs if r.counters_agree is not None]
    return {"requests": len(checked), "agree": sum(checked)} if checked else None


def add_free_draft_verify_cost(rows: list[Row], runs: list[RunRecord]) -> None:
    """llama.cpp's T(k+1)/T(1) from its synthetic-acceptance rows (labkit.core.metrics.verify_cost_free_drafts),
    with T(1) from llama.cpp plain in the same run (its decoding seconds per token, pooled per category)."""
    plain = [r for r in runs if r.method == Method("llama.cpp", "plain", 0).key]
    for r in rows:
        if r.engine != "llama.cpp" or not r.method.startswith("synthetic-"):
            continue
        base = _pool(x for x in plain if r.category in ("all", x.category))
        mine = [x for x in runs if x.method == Method("llama.cpp", r.method, r.k).key
                and r.category in ("all", x.category)]
        tok_s = metrics.decode_tok_s(base) if base.new_tokens else 0.0
        t1 = 1.0 / tok_s if tok_s else 0.0  # plain decoding drafts nothing: its decode time is all verify
        r.verify_cost = metrics.verify_cost_free_drafts(_pool(mine), t1) if mine else None


def add_roofline(rows: list[Row], wbytes: int) -> None:
    """Weight GB/s each row implies: tokens/s x bytes of weights a token costs when read once per token
    (speculation can exceed the copy rate: one weight read serves several tokens); and actual target forwards/s."""
    for r in rows:
        r.weight_gbps = r.end_to_end_tok_s * wbytes / 1e9
        tpf = r.tokens_per_verify or (1.0 if r.k == 0 else None)  # plain decoding: 1 token per forward
        r.tokens_per_verify = tpf
        r.target_forward_gbps = r.end_to_end_tok_s / tpf * wbytes / 1e9 if tpf else None


def quality_vs_bf16(target: Any, runs: list[RunRecord]) -> dict[str, float]:
    """How far an int8 target is from its bf16 original, teacher-forced on the bench's own text (each prompt with
    the int8 target's greedy continuation from the plain runs): mean KL(bf16 || int8) in nats, its 90th percentile,
    and the share of positions whose argmax agrees (labkit.measure.quality.divergence)."""
    from labkit.measure.quality import divergence
    from labkit.models.load import load_target

    bf16 = load_target(target.name, dtype="bf16", device=target.device, progress=False)
    texts, seen = [], set()
    for r in runs:
        if r.method == LABKIT_PLAIN.key and (r.category, r.prompt) not in seen:
            seen.add((r.category, r.prompt))
            texts.append(r.prompt_ids + r.tokens)
    return divergence(bf16, {"int8": target}, texts)["int8"]
