"""Long notebook work in a thread with a Stop button: speed and policy sweeps that redraw as they go, and a live
training monitor."""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go

from labkit.core.records import GenerationResult
from labkit.core.verify_cost import VerifyCost
from labkit.lab import figures


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
