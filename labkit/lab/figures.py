"""Plotly figures of what the engine recorded. Pure builders (results in, ``go.Figure`` out): the live widgets
start from these same figures and the static HTML export embeds them, so all three views look alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from labkit.core.metrics import metrics
from labkit.core.records import GenerationResult, KVTrace, RoundRecord
from labkit.core.verify_cost import VerifyCost, as_verify_cost

# One palette everywhere (token strip, figures, HTML export): green kept, red rejected, amber replacement, blue bonus.
COLORS = {
    "accepted": "#2e9d4e",
    "rejected": "#d6453d",
    "replacement": "#e0a100",
    "bonus": "#2f7fd8",
    "plain": "#8a8f98",
    "reused": "#c9ced6",
    "draft": "#9b59b6",
    "verify": "#2f7fd8",
    "theory": "#444444",
}

# Legend under the plot: above it, a long legend would cover the title.
_LAYOUT = dict(template="plotly_white", height=340, margin=dict(l=55, r=20, t=45, b=95),
               legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0.0))


def _fig(title: str, xaxis: str, yaxis: str, **layout: Any) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=14)), xaxis_title=xaxis, yaxis_title=yaxis,
                      **{**_LAYOUT, **layout})
    return fig


def _as_named(results: GenerationResult | Mapping[str, GenerationResult]) -> dict[str, GenerationResult]:
    if isinstance(results, GenerationResult):
        return {str(results.config.get("drafter", "result")): results}
    return dict(results)


# ------------------------------------------------------------------------------------------ acceptance by position


def _rounds_or_counts(res: Any) -> Any:
    """A GenerationResult's rounds, or an engine's Counts (or Metrics) as they are."""
    return res.rounds if isinstance(res, GenerationResult) else getattr(res, "counts", res)


def position_acceptance(rounds: Any) -> tuple[list[float], int]:
    """Acceptance by position (labkit.core.metrics: drafts whose i-th token was accepted / drafts), and the drafts.
    ``rounds``: RoundRecords, or any engine's Counts (a server's counters give the same quantity)."""
    m = metrics(rounds)
    return m.acceptance_by_position, m.counts.drafts


def acceptance_by_position(results: GenerationResult | Mapping[str, GenerationResult] | None = None,
                           alpha: float | None = None, k: int | None = None,
                           title: str = "Acceptance by draft position") -> go.Figure:
    """Bars: measured acceptance by position (unconditional: accepted at i / drafts); line: alpha^i, what i.i.d.
    acceptance at rate alpha predicts for the same quantity."""
    from labkit.measure.theory import expected_acceptance_by_position as theory_curve

    fig = _fig(title, "draft position i", "acceptance by position", yaxis_range=[0, 1.05], bargap=0.25)
    fig.update_xaxes(tick0=1, dtick=1)  # positions are integers; no 1.5 ticks
    named = _as_named(results) if results is not None else {}
    for name, res in named.items():
        rates, drafts = position_acceptance(_rounds_or_counts(res))
        fig.add_bar(x=list(range(1, len(rates) + 1)), y=rates, name=name, customdata=[drafts] * len(rates),
                    hovertemplate="position %{x}: %{y:.2f} (of %{customdata} drafts)<extra>" + name + "</extra>",
                    marker_color=COLORS["accepted"] if len(named) == 1 else None)
    if alpha is not None:
        kk = k or max((len(position_acceptance(_rounds_or_counts(res))[0]) for res in named.values()),
                      default=8) or 8
        fig.add_scatter(x=list(range(1, kk + 1)), y=theory_curve(alpha, kk), mode="lines+markers",
                        name=f"theory α^i, α={alpha:.2f}", line=dict(color=COLORS["theory"], dash="dash"))
    return fig


# ------------------------------------------------------------------------------------------ draft vs verify time


def draft_vs_verify_time(results: GenerationResult | Mapping[str, GenerationResult] | None = None,
                         title: str = "Where the time goes: draft vs verify") -> go.Figure:
    """One result: stacked ms per round. Several: mean ms per round for each (does drafting or verifying cost more)."""
    named = _as_named(results) if results is not None else {}
    if len(named) <= 1:
        fig = _fig(title, "round", "ms", barmode="stack", bargap=0.1)
        res = next(iter(named.values()), None)
        rounds = res.rounds if res is not None else []
        x = [r.index for r in rounds]
        fig.add_bar(x=x, y=[1e3 * r.draft_seconds for r in rounds], name="draft", marker_color=COLORS["draft"])
        fig.add_bar(x=x, y=[1e3 * r.verify_seconds for r in rounds], name="verify", marker_color=COLORS["verify"])
        return fig
    fig = _fig(title, "drafter", "ms per round (mean)", barmode="stack")
    names = list(named)
    for part, attr in (("draft", "draft_seconds"), ("verify", "verify_seconds")):
        ys = [1e3 * sum(getattr(r, attr) for r in res.rounds) / max(1, len(res.rounds)) for res in named.values()]
        fig.add_bar(x=names, y=ys, name=part, marker_color=COLORS[part])
    return fig


# ------------------------------------------------------------------------------------------------ KV timeline

KV_PARTS = ("reused", "computed", "rolled back")
_KV_COLORS = {"reused": COLORS["reused"], "computed": COLORS["accepted"], "rolled back": COLORS["rejected"]}


def kv_segments(kv: KVTrace) -> dict[str, tuple[int, int]]:
    """(start, length) of each part of one round's cache: reused from before, computed this round and kept,
    computed then rolled back (rejected drafts)."""
    top = max(kv.after_verify, kv.after_draft, kv.after_rollback)
    return {
        "reused": (0, kv.before),
        "computed": (kv.before, max(0, kv.after_rollback - kv.before)),
        "rolled back": (kv.after_rollback, max(0, top - kv.after_rollback)),
    }


def kv_range(rounds: Sequence[RoundRecord], who: str = "target") -> list[float] | None:
    """An x range that shows the rounds' new positions large, with a stub of the reused prefix."""
    kvs = [r.target_kv if who == "target" else r.drafter_kv for r in rounds]
    kvs = [kv for kv in kvs if kv is not None]
    if not kvs:
        return None
    lo = min(kv.before for kv in kvs)
    hi = max(max(kv.after_verify, kv.after_draft, kv.after_rollback) for kv in kvs)
    return [max(0, lo - max(4, (hi - lo) // 6)) - 0.5, hi + 0.5]


def kv_timeline(result: GenerationResult | None = None, who: str = "target", title: str | None = None,
                max_rounds: int | None = None) -> go.Figure:
    """One horizontal bar per round over cache positions: grey reused, green computed and kept, red rolled back."""
    if who not in ("target", "drafter"):
        raise ValueError(f"who: must be 'target' or 'drafter', got {who!r}")
    fig = _fig(title or f"{who.capitalize()} KV cache per round", "cache position (tokens)", "round",
               barmode="stack", bargap=0.15, yaxis_autorange="reversed")
    rounds = list(result.rounds if result is not None else [])[:max_rounds]
    rows = kv_rows(rounds, who)
    for part in KV_PARTS:
        xs = rows.get(part, [])
        fig.add_bar(orientation="h", y=[r for r, _ in xs], x=[n for _, n in xs], name=part,
                    marker_color=_KV_COLORS[part],
                    hovertemplate="round %{y}: %{x} positions<extra>" + part + "</extra>")
    rng = kv_range(rounds, who)
    if rng:
        fig.update_xaxes(range=rng)
    return fig


def kv_rows(rounds: Sequence[RoundRecord], who: str = "target") -> dict[str, list[tuple[int, int]]]:
    """Per part, (round, positions) pairs ready for stacked horizontal bars (empty when the cache is not kept)."""
    rows: dict[str, list[tuple[int, int]]] = {p: [] for p in KV_PARTS}
    for r in rounds:
        kv = r.target_kv if who == "target" else r.drafter_kv
        if kv is None:
            continue
        for part, (_, n) in kv_segments(kv).items():
            rows[part].append((r.index, n))
    return rows


# ------------------------------------------------------------------------------------------ speed vs draft length


def theory_speedup_curve(alpha: float, c: float, k_max: int,
                         verify_cost: VerifyCost | Mapping[int, float] | None = None) -> tuple[list[int], list[float]]:
    """Theory speedup per k; with a measured verify cost, at its measured ks only."""
    from labkit.measure.theory import expected_speedup

    cost = as_verify_cost(verify_cost)
    ks = [0, *(k for k in cost.ks if k <= k_max)] if cost.ratios else list(range(k_max + 1))
    return ks, [expected_speedup(alpha, k, c, cost.at(k)) for k in ks]


def speed_vs_k(points: Sequence[Mapping[str, Any]] = (), alpha: float | None = None, c: float | None = None,
               k_max: int = 12, title: str = "Speedup vs draft length k",
               verify_cost: VerifyCost | Mapping[int, float] | None = None) -> go.Figure:
    """Measured speedup per k (``points``: dicts with k and speedup), the theory curve from alpha and c, best k;
    with ``verify_cost`` (T(k+1)/T(1) measured), the theory uses that cost instead of a free verify."""
    from labkit.measure.theory import best_k

    fig = _fig(title, "draft length k", "speedup over plain decoding", xaxis_range=[-0.5, k_max + 0.5])
    fig.add_hline(y=1, line=dict(color="#999", width=1, dash="dot"))
    if alpha is not None and c is not None:
        ks, ys = theory_speedup_curve(alpha, c, k_max, verify_cost)
        cost = "measured verify cost" if as_verify_cost(verify_cost).ratios else "free verify"
        fig.add_scatter(x=ks, y=ys, mode="lines", name=f"theory (α={alpha:.2f}, c={c:.3f}, {cost})",
                        line=dict(color=COLORS["theory"], dash="dash"))
        kb, sb = best_k(alpha, c, k_max, verify_cost)
        fig.add_scatter(x=[kb], y=[sb], mode="markers", name=f"theory best k={kb}",
                        marker=dict(symbol="star", size=14, color=COLORS["theory"]))
    pts = sorted(points, key=lambda p: p["k"])
    rep = [p.get("repetition") for p in pts]  # share of generated 4-grams seen before: where prompt lookup wins
    fig.add_scatter(x=[p["k"] for p in pts], y=[p["speedup"] for p in pts], mode="lines+markers", name="measured",
                    marker=dict(size=9, color=COLORS["accepted"]), line=dict(color=COLORS["accepted"]),
                    customdata=[-1.0 if v is None else v for v in rep],
                    hovertemplate="k=%{x}: %{y:.2f}x, repetition %{customdata:.2f}<extra>measured</extra>")
    if pts:
        best = max(pts, key=lambda p: p["speedup"])
        fig.add_scatter(x=[best["k"]], y=[best["speedup"]], mode="markers", name=f"measured best k={best['k']}",
                        marker=dict(symbol="star", size=18, color=COLORS["bonus"]))
    return fig


def _label(row: Mapping[str, Any]) -> str:
    return str(row.get("config") or row.get("policy") or f"k = {row['k']}")


def policy_speedups(rows: Sequence[Mapping[str, Any]] = (),
                    title: str = "Fixed k or a policy: speedup over plain decoding") -> go.Figure:
    """One bar per configuration (``rows`` from run_sweep, with an optional "config" label; k = 0 rows are the
    baseline line at 1): its speedup, with tokens per verify and the mean k drafted per round written on it."""
    fig = _fig(title, "configuration", "speedup over plain decoding")
    fig.add_hline(y=1, line=dict(color="#999", width=1, dash="dot"))
    pts = [r for r in rows if r["k"] > 0]
    fig.add_bar(x=[_label(r) for r in pts], y=[r["speedup"] for r in pts],
                marker_color=[COLORS["plain"] if r.get("policy") is None else COLORS["bonus"] for r in pts],
                text=[f"{r['speedup']:.2f}x<br>{r['tokens_per_verify']:.2f} tok/verify<br>"
                      f"mean draft length {r['mean_draft_length']:.1f}" for r in pts], textposition="auto",
                customdata=[[r["tokens_per_verify"], r["mean_draft_length"]] for r in pts],
                hovertemplate="%{x}: %{y:.2f}x, %{customdata[0]:.2f} tokens/verify, mean k drafted "
                              "%{customdata[1]:.2f}<extra></extra>")
    return fig


def drafted_k_per_round(results: Mapping[str, GenerationResult] | None = None,
                        title: str = "Tokens drafted per round (first prompt)") -> go.Figure:
    """Per configuration, over the rounds of one generation: k asked of the drafter (dashed) and tokens it
    actually drafted (solid; fewer when a confidence stop or an empty lookup cut the draft)."""
    fig = _fig(title, "round", "draft tokens", yaxis_rangemode="tozero")
    palette = [COLORS["plain"], COLORS["bonus"], COLORS["accepted"], COLORS["replacement"], COLORS["draft"],
               COLORS["rejected"]]
    for i, (name, res) in enumerate((results or {}).items()):
        color, x = palette[i % len(palette)], [r.index for r in res.rounds]
        fig.add_scatter(x=x, y=[len(r.drafted) for r in res.rounds], mode="lines+markers", name=f"{name}: drafted",
                        line=dict(color=color), marker=dict(size=5), legendgroup=name,
                        customdata=[r.draft_reason for r in res.rounds],
                        hovertemplate="round %{x}: %{y} drafted (%{customdata})<extra>" + name + "</extra>")
        fig.add_scatter(x=x, y=[r.k_requested for r in res.rounds], mode="lines", name=f"{name}: asked",
                        line=dict(color=color, dash="dash", width=1), legendgroup=name,
                        hovertemplate="round %{x}: k asked %{y}<extra>" + name + "</extra>")
    return fig


def repetition_bars(shares: Mapping[str, float], n: int = 4,
                    title: str = "Repetition: share of generated 4-grams seen before") -> go.Figure:
    """One bar per run (``shares`` from labkit.measure.text.repetition): how much of the output copies earlier text,
    which is what prompt lookup drafts from. Shown next to a speed figure so a win can be read for what it is."""
    fig = _fig(title, "run", f"share of generated {n}-grams already seen", yaxis_range=[0, 1])
    fig.add_bar(x=list(shares), y=list(shares.values()), marker_color=COLORS["plain"],
                text=[f"{100 * v:.0f}%" for v in shares.values()], textposition="outside")
    return fig


# ----------------------------------------------------------------------------------------- verify cost (roofline)


def verify_cost_chart(cost: VerifyCost, one_token_ms: float, weight_bytes: float | None = None,
                      bandwidth: float | None = None, flops_per_token: float | None = None, flops: float | None = None,
                      title: str = "One target forward over n = k + 1 new tokens") -> go.Figure:
    """The verify cost in ms per forward against n = k + 1 tokens (measured medians times the one-token forward,
    with their spread; and the curve the lab computes with), the memory floor (weights / bandwidth) and the compute
    line."""
    fig = _fig(title, "tokens in the forward, n = k + 1", "ms per forward (log scale)", yaxis_type="log")
    ks = [0, *cost.ks]
    measured = [1.0, *(cost.raw.get(k, cost.ratios[k]) for k in cost.ks)]
    fig.add_scatter(x=[k + 1 for k in ks], y=[one_token_ms * r for r in measured], mode="lines+markers",
                    name=f"measured ({cost.where or cost.source})", marker=dict(size=8),
                    error_y=dict(type="data", array=[0.0, *(one_token_ms * cost.spread.get(k, 0.0) / 2
                                                           for k in cost.ks)]))
    fig.add_scatter(x=[k + 1 for k in ks], y=[one_token_ms * cost.at(k) for k in ks], mode="lines",
                    name="the curve the lab uses (at least 1, non-decreasing)", line=dict(color=COLORS["accepted"]))
    ns = [k + 1 for k in ks]
    # what plain decoding pays for the same n tokens: n one-token forwards
    fig.add_scatter(x=ns, y=[n * one_token_ms for n in ns], mode="lines", name="n one-token forwards (plain decoding)",
                    line=dict(color="#aaaaaa", dash="dot"))
    if weight_bytes and bandwidth:
        floor = 1e3 * weight_bytes / bandwidth
        fig.add_scatter(x=[min(ns), max(ns)], y=[floor, floor], mode="lines", name="memory floor: weights ÷ bandwidth",
                        line=dict(color=COLORS["rejected"], dash="dash"))
    if flops_per_token and flops:
        fig.add_scatter(x=ns, y=[1e3 * flops_per_token * n / flops for n in ns], mode="lines",
                        name="compute: n × FLOPs ÷ matmul rate", line=dict(color=COLORS["theory"], dash="dot"))
    return fig


# ------------------------------------------------------------------------------------------------- distributions


def distribution_compare(exact: Sequence[float], empirical: Mapping[str, Sequence[float]], labels: Sequence[str],
                         title: str = "Output distribution: exact vs sampled") -> go.Figure:
    """Grouped bars of the exact target distribution and each empirical one (labels = outcomes)."""
    fig = _fig(title, "outcome", "probability", barmode="group")
    fig.add_bar(x=list(labels), y=list(exact), name="exact (target)", marker_color=COLORS["theory"])
    palette = [COLORS["accepted"], COLORS["rejected"], COLORS["bonus"], COLORS["replacement"]]
    for i, (name, ys) in enumerate(empirical.items()):
        fig.add_bar(x=list(labels), y=list(ys), name=name, marker_color=palette[i % len(palette)])
    return fig


def loss_curves(title: str = "Training the MTP head") -> go.Figure:
    """An empty two-axis figure for a live training run: loss (left) and draft acceptance (right)."""
    fig = _fig(title, "step", "loss", yaxis2=dict(title="acceptance", overlaying="y", side="right", range=[0, 1],
                                                  tickmode="linear", tick0=0, dtick=0.2, showgrid=False))
    fig.add_scatter(x=[], y=[], mode="lines", name="train loss", line=dict(color=COLORS["bonus"]))
    fig.add_scatter(x=[], y=[], mode="lines+markers", name="acceptance (held-out)", yaxis="y2",
                    line=dict(color=COLORS["accepted"]))
    return fig
