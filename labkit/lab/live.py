"""Live views for JupyterLab: a token strip (anywidget) and dashboards that subscribe to the engine's rounds.

Every view here is a hook: pass it in ``SpeculativeDecoder(..., hooks=[view])`` and it fills while the model
generates (traitlet and FigureWidget updates reach the browser as they happen). Views only observe; they never
change what the engine does.
"""

from __future__ import annotations

import time
from typing import Any

import anywidget
import ipywidgets as W
import plotly.graph_objects as go
import traitlets

from labkit.core.records import GenerationResult, RoundRecord
from labkit.lab import figures
from labkit.lab.views import round_html, span_dicts, summary_html, web_asset

# ----------------------------------------------------------------------------------------------- token strip


class TokenStrip(anywidget.AnyWidget):
    """Generated tokens coloured by verdict (accepted, rejected, replacement, bonus); hover a token for p, q, u.

    Call it with each RoundRecord (it is a hook) or ``show(result)`` a finished one.
    """

    _esm = web_asset("token_strip.js")
    _css = web_asset("token_strip.css")
    title = traitlets.Unicode("").tag(sync=True)
    prompt = traitlets.Unicode("").tag(sync=True)
    spans = traitlets.List(traitlets.Dict()).tag(sync=True)
    summary = traitlets.Unicode("").tag(sync=True)

    def __init__(self, tokenizer: Any = None, prompt: str = "", title: str = "",
                 baseline: GenerationResult | float | None = None, **kwargs: Any):
        super().__init__(prompt=prompt, title=title, **kwargs)
        self.tokenizer = tokenizer
        self.baseline = baseline
        self.rounds: list[RoundRecord] = []

    def __call__(self, record: RoundRecord) -> None:
        self.rounds.append(record)
        # A new list object: traitlets only syncs on assignment, not on in-place append.
        self.spans = [*self.spans, *span_dicts(record, self.tokenizer)]
        self.summary = summary_html(live_rounds=self.rounds, baseline=self.baseline)

    def reset(self, prompt: str | None = None) -> None:
        self.rounds = []
        self.spans = []
        self.summary = ""
        if prompt is not None:
            self.prompt = prompt

    def show(self, result: GenerationResult, prompt: str | None = None) -> TokenStrip:
        self.reset(prompt)
        self.rounds = list(result.rounds)
        self.spans = [d for r in result.rounds for d in span_dicts(r, self.tokenizer)]
        self.summary = summary_html(result, self.baseline)
        return self

    def kinds(self) -> dict[str, int]:
        """How many spans of each kind the strip shows."""
        out: dict[str, int] = {}
        for s in self.spans:
            out[s["kind"]] = out.get(s["kind"], 0) + 1
        return out

    def __repr__(self) -> str:  # the text/plain output of a displayed strip: stable, so nbval can compare it
        return f"TokenStrip(title={self.title!r})"


# ------------------------------------------------------------------------------------------- live dashboard


class _Throttle:
    """Redraw at most every ``interval`` seconds, and always on the last round: figures keep up with fast drafters."""

    def __init__(self, interval: float):
        self.interval = interval
        self.last = 0.0

    def due(self, final: bool) -> bool:
        now = time.perf_counter()
        if final or now - self.last >= self.interval:
            self.last = now
            return True
        return False


class LiveDashboard(W.VBox):
    """Token strip + acceptance by position + draft/verify time per round + KV timeline, filled live (a hook)."""

    def __init__(self, tokenizer: Any = None, prompt: str = "", title: str = "",
                 baseline: GenerationResult | float | None = None, alpha: float | None = None,
                 kv: bool = True, interval: float = 0.25):
        self.strip = TokenStrip(tokenizer, prompt=prompt, title=title, baseline=baseline)
        self.alpha = alpha
        self.fig_accept = go.FigureWidget(figures.acceptance_by_position(None, alpha=alpha))
        self.fig_accept.add_bar(x=[], y=[], name="measured", marker_color=figures.COLORS["accepted"])
        self.fig_time = go.FigureWidget(figures.draft_vs_verify_time(None))
        for f in (self.fig_accept, self.fig_time):
            f.update_layout(height=300)
        self.fig_kv = go.FigureWidget(figures.kv_timeline(None)) if kv else None
        self.rounds: list[RoundRecord] = []
        self._throttle = _Throttle(interval)
        # Each figure in a half-width box: plotly autosizes to its container, side by side.
        row = W.HBox([W.Box([f], layout=W.Layout(width="50%")) for f in (self.fig_accept, self.fig_time)],
                     layout=W.Layout(width="100%"))
        children = [self.strip, row] + ([self.fig_kv] if self.fig_kv is not None else [])
        super().__init__(children)

    def __call__(self, record: RoundRecord) -> None:
        self.rounds.append(record)
        self.strip(record)
        if self._throttle.due(record.finished is not None):
            self.redraw()

    def reset(self, prompt: str | None = None) -> None:
        self.rounds = []
        self.strip.reset(prompt)
        self.redraw()

    def show(self, result: GenerationResult) -> LiveDashboard:
        self.reset()
        self.rounds = list(result.rounds)
        self.strip.show(result)
        self.redraw()
        return self

    def redraw(self) -> None:
        rounds = self.rounds
        rates, drafts = figures.position_acceptance(rounds)
        with self.fig_accept.batch_update():
            bar = self.fig_accept.data[-1]  # the "measured" bars (added last, after any theory line)
            bar.x = list(range(1, len(rates) + 1))
            bar.y = rates
            bar.customdata = [drafts] * len(rates)
        with self.fig_time.batch_update():
            x = [r.index for r in rounds]
            self.fig_time.data[0].x, self.fig_time.data[0].y = x, [1e3 * r.draft_seconds for r in rounds]
            self.fig_time.data[1].x, self.fig_time.data[1].y = x, [1e3 * r.verify_seconds for r in rounds]
        if self.fig_kv is not None:
            rows = figures.kv_rows(rounds, "target")
            with self.fig_kv.batch_update():
                for trace, part in zip(self.fig_kv.data, figures.KV_PARTS, strict=True):
                    trace.y = [r for r, _ in rows[part]]
                    trace.x = [n for _, n in rows[part]]
                self.fig_kv.layout.height = max(300, min(900, 90 + 14 * len(rounds)))
                self.fig_kv.layout.xaxis.range = figures.kv_range(rounds, "target")

    def __repr__(self) -> str:
        return f"LiveDashboard(title={self.strip.title!r})"


class KVTimeline(W.VBox):
    """Cache positions per round, live: target cache and (when the drafter keeps one) the drafter's cache."""

    def __init__(self, title: str = "", interval: float = 0.25, drafter: bool = True):
        self.figs = {"target": go.FigureWidget(figures.kv_timeline(None, "target", title=f"{title} target KV cache"))}
        if drafter:
            self.figs["drafter"] = go.FigureWidget(figures.kv_timeline(None, "drafter",
                                                                       title=f"{title} drafter KV cache"))
        self.rounds: list[RoundRecord] = []
        self._throttle = _Throttle(interval)
        self.title = title
        super().__init__(list(self.figs.values()))

    def __call__(self, record: RoundRecord) -> None:
        self.rounds.append(record)
        if self._throttle.due(record.finished is not None):
            self.redraw()

    def redraw(self) -> None:
        for who, fig in self.figs.items():
            rows = figures.kv_rows(self.rounds, who)
            with fig.batch_update():
                for trace, part in zip(fig.data, figures.KV_PARTS, strict=True):
                    trace.y = [r for r, _ in rows[part]]
                    trace.x = [n for _, n in rows[part]]
                fig.layout.height = max(260, min(700, 90 + 14 * len(self.rounds)))
                fig.layout.xaxis.range = figures.kv_range(self.rounds, who)

    def __repr__(self) -> str:
        return f"KVTimeline(title={self.title!r})"


# ---------------------------------------------------------------------------------------- round by round


class RoundStepper(W.VBox):
    """Replays a finished generation one round per click: drafts with q(x), p(x), u, the verdicts, the
    replacement or bonus token, and both KV caches before/after. Shows round 0 before any click."""

    def __init__(self, result: GenerationResult, tokenizer: Any = None, prompt: str | None = None):
        if not result.rounds:
            raise ValueError("result: has no rounds to step through")
        self.result, self.tokenizer = result, tokenizer
        self.prompt = prompt
        self.index = 0
        self.prev = W.Button(description="◀ previous round", layout=W.Layout(width="160px"))
        self.next = W.Button(description="next round ▶", button_style="primary", layout=W.Layout(width="160px"))
        self.label = W.Label()
        self.view = W.HTML()
        self.prev.on_click(lambda _: self.go(self.index - 1))
        self.next.on_click(lambda _: self.go(self.index + 1))
        super().__init__([W.HBox([self.prev, self.next, self.label]), self.view])
        self.go(0)

    def go(self, index: int) -> None:
        self.index = max(0, min(index, len(self.result.rounds) - 1))
        self.view.value = self.html()
        self.label.value = f"round {self.index + 1} of {len(self.result.rounds)}"
        self.prev.disabled = self.index == 0
        self.next.disabled = self.index == len(self.result.rounds) - 1

    def html(self) -> str:
        return round_html(self.result, self.index, self.tokenizer, prompt=self.prompt)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # Besides the live widget, an HTML copy of the current round: what a static viewer (and nbval) sees.
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/html"] = self.html()
        return bundle

    def __repr__(self) -> str:
        return f"RoundStepper(round {self.index + 1} of {len(self.result.rounds)})"
