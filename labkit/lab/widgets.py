"""Live views for JupyterLab: a token strip (anywidget) and dashboards that subscribe to the engine's rounds.

Every view here is a hook: pass it in ``SpeculativeDecoder(..., hooks=[view])`` and it fills while the model
generates (traitlet and FigureWidget updates reach the browser as they happen). Views only observe; they never
change what the engine does.
"""

from __future__ import annotations

import contextlib
import html
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import anywidget
import ipywidgets as W
import plotly.graph_objects as go
import traitlets

from labkit.core.records import GenerationResult, RoundRecord
from labkit.core.verify_cost import VerifyCost
from labkit.lab import figures
from labkit.lab.views import round_html, span_dicts, summary_html, web_asset


def notebook_setup(threads: int | None = None, quiet: bool = True, record: bool = True) -> str:
    """What every notebook's first cell does after installing labkit; returns the device to use ("cuda"/"cpu").

    Picks torch's threads by labkit's one probe (labkit.threads), silences load-time progress bars and deprecation
    chatter so executed notebooks show only what the lesson is about, and prints the run's record (``record``):
    machine, load average, threads and date, so every saved output says where its numbers were measured.
    """
    import torch

    from labkit.threads import set_threads

    n = set_threads(threads or "auto")
    if record:
        print(run_record(n))
    if quiet:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
        with contextlib.suppress(Exception):
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
    import plotly.io as pio

    # Static figures as plotly JSON (JupyterLab's plotly extension draws them): the "notebook" renderer would
    # embed ~4 MB of plotly.js into every saved notebook. Colab has its own renderer. Next to the JSON, a PNG
    # (kaleido + a system Chrome) so that nbconvert HTML and GitHub, which cannot run plotly, show the figure too.
    pio.renderers.default = "colab" if in_colab() else (
        "plotly_mimetype+png" if static_images() else "plotly_mimetype")
    return "cuda" if torch.cuda.is_available() else "cpu"


def static_images(width: int = 760, height: int = 440) -> bool:
    """Start kaleido's browser once for this kernel (PNG copies of figures); False where there is no Chrome or
    Chromium to draw with (the figures then stay plotly JSON only). The browser stops when the kernel exits."""
    import atexit

    if not _have_browser():  # kaleido would wait for one (or try to download one) at the first figure
        return False
    try:
        import kaleido
        import plotly.io as pio

        kaleido.start_sync_server(silence_warnings=True)
        # plotly passes its default browser options, which a running server ignores (and says so, per figure)
        warnings.filterwarnings("ignore", message="The kopts argument is ignored")
        atexit.register(kaleido.stop_sync_server, silence_warnings=True)
        png = pio.renderers["png"]
        png.width, png.height = width, height
        return True
    except Exception:  # noqa: BLE001  (no browser, no kaleido: interactive figures only)
        return False


def _have_browser() -> bool:
    """A Chrome or Chromium kaleido can draw with: on PATH, at $BROWSER_PATH, macOS's app, or kaleido's own copy."""
    import os
    import shutil
    from pathlib import Path

    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "msedge")
    if os.environ.get("BROWSER_PATH") or any(shutil.which(n) for n in names):
        return True
    if Path("/Applications/Google Chrome.app").exists():
        return True
    try:
        from choreographer.browsers.chromium import get_chrome_download_path

        path = get_chrome_download_path()
        return path is not None and Path(path).exists()
    except Exception:  # noqa: BLE001  (another choreographer: no downloaded copy to find)
        return False


def run_record(threads: int | None = None) -> str:
    """One line: where and when this notebook ran (CPU, cores, 1-minute load average, threads, torch, date)."""
    import platform
    import time

    import torch

    from labkit.threads import cores, cpu_info, load_average

    load = load_average()
    dev = f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else cpu_info()[0]
    return (f"run on {dev} ({platform.machine()}), {cores()} cores, load average "
            f"{'unknown' if load is None else f'{load:.2f}'}, {threads or torch.get_num_threads()} thread(s), "
            f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}")


def default_threads() -> int:
    """Torch threads for the notebooks: the one thread policy (labkit.threads.choose_threads)."""
    from labkit.threads import choose_threads

    return choose_threads()[0]


def ci_scale(full: Any, ci: Any) -> Any:
    """``ci`` when LABKIT_CI is set (the notebook test run), else ``full``: heavy cells shrink, never skip."""
    return ci if os.environ.get("LABKIT_CI", "") not in ("", "0") else full


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


# --------------------------------------------------------------------------------- background runs with Stop


class Stopped(Exception):
    """Raised inside a background run when Stop was pressed."""


class BackgroundRun(W.VBox):
    """Runs ``work(self)`` in a thread so the notebook stays responsive and a Stop button works.

    The work calls ``self.check()`` (between rounds or steps) to honour Stop, and ``self.status(text)`` to report.
    A browser event is only handled while no cell is running -- hence the thread.
    """

    def __init__(self, children: Sequence[W.Widget] = (), title: str = ""):
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop",
                                    layout=W.Layout(width="90px"))
        self.stop_button.on_click(lambda _: self.stop())
        self.label = W.HTML(value="")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.stopped = False
        self.title = title
        super().__init__([W.HBox([self.stop_button, self.label]), *children])

    def start(self, work: Callable[[BackgroundRun], Any]) -> BackgroundRun:
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("already running; stop() or wait() first")
        self._stop.clear()
        self.stopped, self.error = False, None

        def target() -> None:
            try:
                work(self)
                self.status(self.label.value + " · done")
            except Stopped:
                self.stopped = True
                self.status(self.label.value + " · stopped")
            except BaseException as e:  # surfaced by wait(): a thread's exception would otherwise vanish
                self.error = e
                self.status(f"<span style='color:#b00'>error: {html.escape(repr(e))}</span>")
            finally:
                self.stop_button.disabled = True

        self.stop_button.disabled = False
        self._thread = threading.Thread(target=target, name=f"labkit-{self.title or 'run'}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def check(self, *_: Any) -> None:
        """Raise Stopped when Stop was pressed; usable as an engine hook (called after every round)."""
        if self._stop.is_set():
            raise Stopped()

    def status(self, text: str) -> None:
        self.label.value = text

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> BackgroundRun:
        """Block until the run ends (the cell after a live run calls this); re-raise the run's error."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(title={self.title!r})"


class SpeedSweep(BackgroundRun):
    """Speed vs draft length k, measured live: the plot grows a point per k, the theory curve (from the measured
    alpha, c and the measured ``verify_cost`` when given) is redrawn as the estimates improve, the best k is marked.
    Runs in a thread; Stop works."""

    def __init__(self, target: Any, drafter: Any, ks: Iterable[int], prompts: Sequence[str],
                 max_new_tokens: int = 48, repeats: int = 1, title: str = "speed vs k",
                 verify_cost: VerifyCost | None = None, **gen: Any):
        self.target, self.drafter = target, drafter
        self.verify_cost = verify_cost  # measured T(k+1)/T(1): the theory curve uses it instead of a free verify
        self.ks = sorted(set(ks) | {0})  # k = 0 is plain decoding: the baseline every speedup divides by
        self.prompts, self.max_new_tokens, self.repeats, self.gen = list(prompts), max_new_tokens, repeats, gen
        self.k_max = max(self.ks)
        self.fig = go.FigureWidget(figures.speed_vs_k([], k_max=self.k_max))
        self.points: list[dict[str, Any]] = []
        self.results: dict[int, list[GenerationResult]] = {}
        super().__init__([self.fig], title=title)

    def run(self) -> SpeedSweep:
        return self.start(lambda me: me._work())  # type: ignore[arg-type]

    def _work(self) -> None:
        from labkit.measure.sweep import run_sweep

        for k in self.ks:  # one point at a time through the one sweep runner, so the plot grows as it measures
            self.check()
            self.status(f"measuring k = {k} …")
            drafters = {"plain": None} if k == 0 else {"drafter": self.drafter}
            row = run_sweep(self.target, drafters, [k], self.prompts, max_new_tokens=self.max_new_tokens,
                            repeats=self.repeats, base=self.results.get(0), hooks=[self.check], warmup=k in self.ks[:2],
                            **self.gen)[0]
            self.results[k] = row.pop("results")
            self.points.append({key: row[key] for key in ("k", "decode_tok_s", "speedup", "tokens_per_verify", "alpha",
                                                          "draft_cost", "repetition")})
            self.redraw()
            self.status(f"k = {k}: {self.points[-1]['speedup']:.2f}× "
                        f"({self.points[-1]['tokens_per_verify']:.2f} tokens/verify)")

    def estimates(self) -> tuple[float | None, float | None]:
        """alpha and c (labkit.core.metrics) pooled over every k measured so far."""
        from labkit.core.metrics import alpha as alpha_of
        from labkit.core.metrics import counts, draft_cost

        c = counts(r for k, rs in self.results.items() if k > 0 for r in rs)
        return alpha_of(c), draft_cost(c)

    def redraw(self) -> None:
        alpha, c = self.estimates()
        fresh = figures.speed_vs_k(self.points, alpha=alpha, c=c, k_max=self.k_max, verify_cost=self.verify_cost)
        with self.fig.batch_update():
            self.fig.data = []
            self.fig.add_traces(list(fresh.data))
            self.fig.layout = fresh.layout


class PolicySweep(BackgroundRun):
    """Fixed k against draft-length policies, measured live: plain decoding (the baseline) and each configuration
    ({label: int k or policy}) interleaved per prompt through the one sweep runner, ``repeats`` times. After each
    repeat, two figures redraw: the speedup per configuration (medians so far, with tokens per verify and mean draft
    length), and the k asked / tokens drafted per round of the first prompt, where a policy is seen to move. Rows
    carry ``speed_spread`` from the repeats. Runs in a thread; Stop works; ``.rows`` afterwards."""

    def __init__(self, target: Any, drafter: Any, configs: Mapping[str, Any], prompts: Sequence[Any],
                 max_new_tokens: int = 48, repeats: int = 1, title: str = "fixed k or a policy", **gen: Any):
        if not configs:
            raise ValueError("configs: give at least one {label: k or policy}, e.g. {'k = 4': 4, 'auto': 'auto'}")
        from labkit.core.draft_length import as_policy

        if "plain" in configs:
            raise ValueError("configs: 'plain' is the baseline's label (measured anyway); name it otherwise")
        if bad := [label for label, k in configs.items() if as_policy(k).k_max == 0]:
            raise ValueError(f"configs: {', '.join(bad)} draft nothing (k = 0); plain decoding is measured anyway")
        self.target, self.drafter, self.configs = target, drafter, dict(configs)
        self.prompts, self.max_new_tokens, self.repeats, self.gen = list(prompts), max_new_tokens, repeats, gen
        self.rows: list[dict[str, Any]] = []  # one per configuration measured, plain decoding first
        self.results: dict[str, list[GenerationResult]] = {}
        self.fig_speed = go.FigureWidget(figures.policy_speedups())
        self.fig_k = go.FigureWidget(figures.drafted_k_per_round())
        super().__init__([self.fig_speed, self.fig_k], title=title)

    def run(self) -> PolicySweep:
        return self.start(lambda me: me._work())  # type: ignore[arg-type]

    def _work(self) -> None:
        from labkit.core.draft_length import FixedK, as_policy
        from labkit.measure.sweep import labkit_engines, run_side_by_side, sweep_point

        todo = {"plain": (None, 0), **{label: (self.drafter, k) for label, k in self.configs.items()}}
        engines = labkit_engines(self.target, todo, [self.check], **self.gen)
        per_rep: dict[str, list[list[GenerationResult]]] = {label: [] for label in todo}
        for rep in range(self.repeats):  # every repeat runs every configuration, interleaved per prompt
            self.check()
            self.status(f"repeat {rep + 1}/{self.repeats}: plain decoding and {len(self.configs)} configurations, "
                        "interleaved …")
            records = run_side_by_side(engines, {"": self.prompts}, self.max_new_tokens, seed=rep,
                                       warmup_tokens=8 if rep == 0 else 0,
                                       device=getattr(self.target, "device", "cpu"))
            for label in todo:
                per_rep[label].append([r["result"].generation for r in records if r["config"] == label])
            self.results = {label: reps[0] for label, reps in per_rep.items()}
            self.rows = []
            for label, (_, k) in todo.items():
                policy = as_policy(k)
                row = sweep_point(policy.k_max, per_rep[label], per_rep["plain"])
                self.rows.append({"config": label, "drafter": "plain" if label == "plain" else "drafter", **row,
                                  "policy": None if isinstance(policy, FixedK) else repr(policy)})
            self.redraw()
            best = max(self.rows[1:], key=lambda r: r["speedup"] or 0)
            self.status(f"after repeat {rep + 1}: fastest {html.escape(best['config'])} at {best['speedup']:.2f}× "
                        f"({best['tokens_per_verify']:.2f} tokens/verify, mean draft length "
                        f"{best['mean_draft_length']:.1f})")

    def first_prompt(self) -> dict[str, GenerationResult]:
        """Each drafting configuration's run on the first prompt (first repeat): the rounds the k figure shows."""
        return {label: rs[0] for label, rs in self.results.items() if label != "plain" and rs}

    def redraw(self) -> None:
        for widget, fresh in ((self.fig_speed, figures.policy_speedups(self.rows)),
                              (self.fig_k, figures.drafted_k_per_round(self.first_prompt()))):
            with widget.batch_update():
                widget.data = []
                widget.add_traces(list(fresh.data))
                widget.layout = fresh.layout


class TrainingMonitor(W.VBox):
    """A live loss + acceptance curve for a training loop: call it (or ``log``) with step, loss=..., acceptance=...."""

    def __init__(self, title: str = "Training the MTP head"):
        self.fig = go.FigureWidget(figures.loss_curves(title))
        self.title = title
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.acc_steps: list[int] = []
        self.accs: list[float] = []
        self.reference: float | None = None
        self.label = W.HTML()
        super().__init__([self.label, self.fig])

    def log(self, step: int, loss: float | None = None, acceptance: float | None = None, **extra: Any) -> None:
        if loss is not None:
            self.steps.append(step)
            self.losses.append(float(loss))
        if acceptance is not None:
            self.acc_steps.append(step)
            self.accs.append(float(acceptance))
        with self.fig.batch_update():
            self.fig.data[0].x, self.fig.data[0].y = self.steps, self.losses
            self.fig.data[1].x, self.fig.data[1].y = self.acc_steps, self.accs
        bits = [f"step {step}"] + ([f"loss {loss:.3f}"] if loss is not None else [])
        bits += [f"held-out acceptance {acceptance:.2f}"] if acceptance is not None else []
        bits += [f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in extra.items()]
        self.label.value = " · ".join(bits)

    def reference_line(self, acceptance: float, label: str = "shipped head") -> None:
        """A dashed horizontal line on the acceptance axis (e.g. the shipped head on the same held-out text)."""
        self.reference = float(acceptance)
        x = [0, max(self.steps + self.acc_steps + [1])]
        self.fig.add_scatter(x=x, y=[acceptance, acceptance], mode="lines", yaxis="y2", name=label,
                             line=dict(color=figures.COLORS["theory"], dash="dash"))

    def __call__(self, step: int, **metrics: Any) -> None:
        self.log(step, **metrics)

    def __repr__(self) -> str:
        return f"TrainingMonitor(title={self.title!r})"


def in_colab() -> bool:
    return "google.colab" in sys.modules
