"""The notebook components on tiny models: token strip, dashboards, figures, static HTML, background runs."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from labkit import SpeculativeDecoder, tiny_pair
from labkit.core import metrics
from labkit.drafters import DraftModelDrafter, NGramDrafter
from labkit.lab import figures, views, widgets
from labkit.lab.lossless import chi_square, first_divergence
from labkit.lab.render import round_spans
from labkit.measure.sweep import sweep_point


@pytest.fixture(scope="module")
def sampled():
    target, draft = tiny_pair(vocab_size=32, seed=0)
    strip = widgets.TokenStrip(None, prompt="<prompt>", title="tiny")
    dash = widgets.LiveDashboard(None, title="tiny")
    kv = widgets.KVTimeline(title="tiny")
    dec = SpeculativeDecoder(target, DraftModelDrafter(draft), k=4, hooks=[strip, dash, kv])
    res = dec.generate([1, 5, 7], max_new_tokens=40, temperature=1.0, seed=1)
    return res, strip, dash, kv


def test_span_dicts_follow_render_and_carry_numbers(sampled):
    res = sampled[0]
    for r in res.rounds:
        spans = round_spans(r)
        dicts = views.span_dicts(r)
        assert [d["kind"] for d in dicts] == [s.kind for s in spans]
        assert dicts[0]["first"] and not any(d["first"] for d in dicts[1:])
        for d in dicts:
            if d["kind"] in ("accepted", "rejected"):
                assert "p(x) =" in d["tip"] and "q(x) =" in d["tip"] and "u =" in d["tip"]


def test_token_strip_fills_from_hook(sampled):
    res, strip, _, _ = sampled
    assert len(strip.rounds) == len(res.rounds)
    kinds = strip.kinds()
    assert sum(n for k, n in kinds.items() if k != "rejected") == len(res.token_ids)
    assert kinds.get("accepted", 0) > 0 and kinds.get("rejected", 0) > 0
    assert "tokens per verify" in strip.summary
    assert repr(strip) == "TokenStrip(title='tiny')"  # stable text/plain for nbval
    again = widgets.TokenStrip(None).show(res)
    assert again.spans == strip.spans


def test_dashboard_and_kv_timeline_track_rounds(sampled):
    res, _, dash, kv = sampled
    n = len(res.rounds)
    assert list(dash.fig_time.data[0].x) == list(range(n))
    assert len(dash.fig_kv.data) == len(figures.KV_PARTS) and len(dash.fig_kv.data[0].x) == n
    rates, _ = figures.position_acceptance(res.rounds)
    assert list(dash.fig_accept.data[-1].y) == pytest.approx(rates)
    assert len(kv.figs["drafter"].data[0].x) == n
    assert repr(dash) == "LiveDashboard(title='tiny')"


def test_kv_segments_add_up(sampled):
    for r in sampled[0].rounds:
        seg = figures.kv_segments(r.target_kv)
        assert seg["reused"][1] == r.target_kv.before
        assert seg["computed"][1] == len(r.emitted)  # the pending token + kept drafts
        assert seg["rolled back"][1] == r.target_kv.discarded


def test_static_html(sampled, tmp_path):
    res = sampled[0]
    frag = views.strip_html(res, None, title="<b>t</b>", prompt="a < b")
    assert "lk-accepted" in frag and "lk-rejected" in frag and "&lt;b&gt;t&lt;/b&gt;" in frag and "a &lt; b" in frag
    path = views.save_html(res, None, tmp_path / "sub" / "out.html", plotlyjs=False)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and "data-tip=" in text and "Acceptance by draft position" in text
    assert len(text) < 500_000  # plotly.js left out
    assert len(views.save_html(res, None, tmp_path / "full.html").read_text()) > 1_000_000  # embedded: offline


def test_round_stepper(sampled):
    res = sampled[0]
    st = widgets.RoundStepper(res, None)
    assert st.index == 0 and st.prev.disabled and "Round 0" in st.view.value
    st.next.click()
    assert st.index == 1 and "Round 1" in st.view.value
    st.go(10_000)
    assert st.index == len(res.rounds) - 1 and st.next.disabled
    bundle = st._repr_mimebundle_()
    assert "text/html" in bundle and "<table" in bundle["text/html"]


def test_figures_speed_vs_k_marks_best():
    pts = [{"k": 0, "speedup": 1.0}, {"k": 2, "speedup": 1.6}, {"k": 4, "speedup": 1.4}]
    fig = figures.speed_vs_k(pts, alpha=0.8, c=0.1, k_max=8)
    names = [t.name for t in fig.data]
    assert "measured best k=2" in names and "theory best k=6" in names  # REFERENCE: alpha .8, c .1 -> k 6
    fig = figures.acceptance_by_position(None, alpha=0.5, k=4)
    assert list(fig.data[0].y) == pytest.approx([0.5, 0.25, 0.125, 0.0625])


def test_background_run_stop_and_errors():
    ticks = []

    def loop(me):
        while True:
            me.check()
            ticks.append(1)
            time.sleep(0.01)

    run = widgets.BackgroundRun(title="t").start(loop)
    time.sleep(0.1)
    assert run.running
    run.stop_button.click()  # what the Stop button does in the browser
    run.wait(5)
    assert run.stopped and not run.running and ticks

    def boom(me):
        raise RuntimeError("bad")

    run = widgets.BackgroundRun().start(boom)
    with pytest.raises(RuntimeError, match="bad"):
        run.wait(5)
    assert "error" in run.label.value


def test_speed_sweep_runs_in_a_thread_and_stops():
    target, _ = tiny_pair(vocab_size=32, seed=0)
    prompts = [[1, 2, 3, 1, 2, 3, 1, 2]]
    sweep = widgets.SpeedSweep(target, NGramDrafter(2), [0, 1, 2], prompts, max_new_tokens=12).run()
    sweep.wait(120)
    assert [p["k"] for p in sweep.points] == [0, 1, 2] and not sweep.stopped
    assert sweep.points[0]["speedup"] == pytest.approx(1.0)
    assert any(t.name == "measured" for t in sweep.fig.data)
    blocked = threading.Event()

    class Slow(NGramDrafter):
        def propose(self, ctx, k, sampler):
            blocked.wait(0.05)
            return super().propose(ctx, k, sampler)

    slow = widgets.SpeedSweep(target, Slow(2), [0, 1, 2, 3, 4], prompts, max_new_tokens=64).run()
    time.sleep(0.2)
    slow.stop()
    slow.wait(60)
    assert slow.stopped and len(slow.points) < 5


def test_training_monitor():
    mon = widgets.TrainingMonitor("t")
    mon(0, acceptance=0.1)
    mon(1, loss=2.0)
    mon(2, loss=1.5, acceptance=0.3)
    mon.reference_line(0.5)
    assert list(mon.fig.data[0].y) == [2.0, 1.5] and list(mon.fig.data[1].y) == [0.1, 0.3]
    assert mon.fig.data[-1].y == (0.5, 0.5)


def test_experiment_helpers(sampled):
    res = sampled[0]
    alpha, c = metrics.alpha(metrics.counts([res])), metrics.draft_cost(metrics.counts([res]))
    acc = sum(r.accepted for r in res.rounds)
    rej = sum(r.rejected_at is not None for r in res.rounds)
    assert alpha == pytest.approx(acc / (acc + rej)) and c > 0
    pt = sweep_point(4, [res], [res])
    assert pt["speedup"] == pytest.approx(1.0) and pt["tokens_per_verify"] == len(res.token_ids) / len(res.rounds)
    assert first_divergence([1, 2, 3], [1, 2, 4]) == 2 and first_divergence([1, 2], [1, 2, 3]) is None
    exact = {(0,): 0.5, (1,): 0.3, (2,): 0.2}
    t = chi_square(Counter({(0,): 500, (1,): 300, (2,): 200}), exact)
    assert t["chi2"] == pytest.approx(0.0) and t["p_value"] == pytest.approx(1.0)
    t = chi_square(Counter({(0,): 900, (1,): 50, (2,): 50}), exact)
    assert t["p_value"] < 1e-10


def test_replay_logits_reproduce_each_runs_choice():
    from labkit import plain_decoder
    from labkit.lab.lossless import replay_logits, tie_report
    from labkit.models.load import as_target

    target, draft = tiny_pair(vocab_size=32, seed=0)
    t = as_target(target)
    prompt = [1, 5, 7, 9]
    plain = plain_decoder(target).generate(prompt, max_new_tokens=12)
    spec = SpeculativeDecoder(target, DraftModelDrafter(draft), k=3).generate(prompt, max_new_tokens=12)
    assert plain.token_ids == spec.token_ids  # fp32 greedy: identical
    for res in (plain, spec):
        for i in (0, 4, 11):
            assert int(replay_logits(t, res, i).argmax()) == res.token_ids[i]
    rep = tie_report(t, plain, spec, 3)
    assert rep["max |difference| over the vocabulary"] < 1e-4  # fp32: chunking barely matters
    with pytest.raises(ValueError):
        replay_logits(t, plain, 12)


@pytest.mark.slow
def test_cli_generate_writes_html(tmp_path, capsys):
    from labkit.cli import main

    out = tmp_path / "gen.html"
    assert main(["generate", "The capital of France is Paris. The capital of Italy is", "--drafter", "ngram",
                 "--max-new-tokens", "8", "--html", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "lk-strip" in text and "data-tip=" in text and "Plotly" in text


def test_summary_gives_the_two_numbers_and_says_when_it_was_live(sampled):
    res = sampled[0]
    n = sum(len(r.emitted) for r in res.rounds)
    secs = sum(r.draft_seconds + r.verify_seconds for r in res.rounds)
    after = views.summary_html(res, baseline=(n / secs) / 2)  # a baseline half as fast: 2.00x
    assert f"<b>{n / len(res.rounds):.2f}</b> tokens per verify" in after
    assert "<b>2.00×</b> speed of plain decoding (" in after
    live = views.summary_html(live_rounds=list(res.rounds), baseline=(n / secs) / 2)
    assert "<b>2.00×</b> speed of plain decoding while drawing live" in live
    assert views.summary_html(res).count("speed") == 0  # no baseline, no speed claim


def test_no_browser_means_interactive_figures_only_and_no_wait(monkeypatch, tmp_path):
    """Without Chrome/Chromium (Binder, a bare laptop) the notebook set-up must not start kaleido: its first figure
    would wait for a browser that never comes. With one on PATH, the check finds it."""
    import time

    from labkit.lab import notebook

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setattr("choreographer.browsers.chromium.get_chrome_download_path", lambda: tmp_path / "none")
    t0 = time.perf_counter()
    assert notebook.static_images() is False and time.perf_counter() - t0 < 2
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert notebook._have_browser() is True
