"""Sentences chosen from numbers (labkit.lab.explain), the thread policy, theory with a measured verify cost, and
`labkit doctor` on a tiny model: synthetic numbers for each case a reader can meet."""

import pytest
import torch

from labkit.core.verify_cost import VerifyCost
from labkit.lab import explain
from labkit.lab.explain import Outcome
from labkit.measure import theory
from labkit.measure.doctor import diagnose, render, verdict
from labkit.threads import default_threads, fastest_threads, set_threads

# ----------------------------------------------------------------------------------------------- explain


def test_winning_case_says_faster_with_its_numbers():
    o = Outcome(speedup=1.8, tokens_per_verify=2.6, k=4, verify_cost=1.2, c=0.0, load=0.5, n_cores=8)
    text = explain.explain_speed(o, what="prompt lookup")
    assert text.startswith("Here prompt lookup was 1.80x as fast as plain decoding")
    assert "2.60 tokens per verify" in text and "1.20x" in text and "predict 2.17x" in text
    assert "busy" not in text and "slower" not in text


def test_costly_verify_is_named_with_what_would_change_it():
    o = Outcome(speedup=0.7, tokens_per_verify=2.0, k=4, verify_cost=3.0, c=0.01, load=0.2, n_cores=2)
    text = explain.explain_speed(o)
    assert "slower than plain decoding (0.70x" in text
    assert "cost 3.00x a one-token forward" in text and "smaller k" in text
    assert "most drafts were rejected" not in text and "busy" not in text


def test_low_acceptance_and_costly_drafter_are_named():
    o = Outcome(speedup=0.5, tokens_per_verify=1.2, k=4, verify_cost=1.1, c=0.3, alpha=0.15)
    reasons = explain.reasons_slow(o)
    assert any("c = 0.300" in r for r in reasons) and any("alpha 0.15" in r for r in reasons)
    assert not any("compute-bound" in r for r in reasons)


def test_busy_machine_is_named_only_when_busy():
    busy = Outcome(speedup=0.9, tokens_per_verify=1.9, k=2, verify_cost=1.1, c=0.0, load=3.7, n_cores=2)
    idle = Outcome(speedup=0.9, tokens_per_verify=1.9, k=2, verify_cost=1.1, c=0.0, load=0.1, n_cores=2)
    assert "load average 3.7 on 2 cores" in explain.explain_speed(busy)
    assert "busy" not in explain.explain_speed(idle) and "overhead" in explain.explain_speed(idle)


def test_about_even():
    o = Outcome(speedup=1.02, tokens_per_verify=1.3, k=1, verify_cost=1.05, c=0.0)
    assert "about even" in explain.explain_speed(o)


def test_impossible_speedup_is_a_measurement_problem():
    assert explain.measurement_problem(4.02, 1.30) is not None  # the demo: plain baseline distorted
    assert explain.measurement_problem(1.25, 1.30) is None
    assert explain.explain_speed(Outcome(speedup=4.02, tokens_per_verify=1.3, k=4)).startswith("Measurement problem")


def test_best_k_sentence_and_repetition():
    assert "No draft length beat plain" in explain.explain_best_k(0, 1.0, 0, 1.0)
    assert "they agree" in explain.explain_best_k(0, 1.0, 0, 1.0)
    assert "k = 3 (1.40x)" in explain.explain_best_k(3, 1.4, 5, 1.9) and "they differ" in explain.explain_best_k(
        3, 1.4, 5, 1.9)
    assert "loops or copies" in explain.explain_repetition(0.8)
    assert "for the MTP head too" in explain.explain_repetition(0.8, drafter="the MTP head")
    assert "some copying" in explain.explain_repetition(0.3)
    assert "little to copy" in explain.explain_repetition(0.05)


# ----------------------------------------------------------------------------------------------- threads


def test_default_threads_leaves_busy_cores_alone(monkeypatch):
    monkeypatch.delenv("LABKIT_THREADS", raising=False)
    assert default_threads(load=3.0, n_cores=2) == 1  # the busy 2-core box
    assert default_threads(load=0.0, n_cores=2) == 2
    assert default_threads(load=1.0, n_cores=8) == 7
    assert default_threads(load=0.0, n_cores=64) == 8
    monkeypatch.setenv("LABKIT_THREADS", "3")
    assert default_threads(load=9.0, n_cores=2) == 3


def test_fastest_threads_and_set_threads_restore(monkeypatch):
    monkeypatch.delenv("LABKIT_THREADS", raising=False)
    before = torch.get_num_threads()
    best, medians = fastest_threads(lambda: 1.0 if torch.get_num_threads() == 1 else 2.0, candidates=[1, 2])
    assert best == 1 and medians == {1: 1.0, 2: 2.0} and torch.get_num_threads() == before
    assert set_threads(1) == 1 and torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="threads"):
        set_threads(0)
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------- theory + doctor


def test_theory_with_measured_verify_cost():
    free = theory.expected_speedup(0.8, 4, 0.0)
    assert theory.expected_speedup(0.8, 4, 0.0, verify_cost=1.0) == pytest.approx(free)
    assert theory.expected_speedup(0.8, 4, 0.0, verify_cost=2.0) == pytest.approx(free / 2)
    cheap = VerifyCost({1: 1.02, 2: 1.04, 4: 1.08, 8: 1.15})
    costly = VerifyCost({1: 1.4, 2: 1.9, 4: 3.0, 8: 4.9})  # the AVX2-only machine
    assert theory.best_k(0.8, 0.0, 8, cheap)[0] == 8
    k, s = theory.best_k(0.7, 0.0, 8, costly)
    assert k in (0, 1) and s < 1.25


def test_verdict_from_cost_curves():
    cheap = verdict({1: 1.02, 2: 1.04, 4: 1.08, 8: 1.15})
    assert cheap.break_even_alpha is not None and cheap.break_even_alpha <= 0.1
    assert "can pay here" in cheap.text()
    costly = verdict({1: 1.4, 2: 1.9, 4: 3.0, 8: 4.9})
    assert costly.break_even_alpha is not None and costly.break_even_alpha > 0.3
    assert "alpha 0.5: k = 1 should give 1.07x" in costly.text()  # 1.5 tokens / 1.4 forwards
    hopeless = verdict({1: 2.0, 2: 3.0})
    assert hopeless.break_even_alpha is None and "cannot pay" in hopeless.text()


def test_doctor_on_a_tiny_model():
    from labkit.models.tiny import tiny_model

    d = diagnose(tiny_model(), ks=(1, 2), repeats=3, copy_megabytes=8)
    assert set(d.verify_cost) == {"bf16", "fp32"} and set(d.verify_cost["bf16"].ratios) == {1, 2}
    assert d.fastest_threads in d.thread_ms or d.n_cores == 1 or d.thread_ms == {}
    assert d.copy_gb_s > 0 and set(d.references) == {"bf16", "fp32"}
    text = render(d)
    assert "bf16 verify cost T(n)/T(1) (3 interleaved rounds" in text and f"{d.n_cores} cores" in text
    assert VerifyCost.from_dict(d.as_dict()["verdict"]["verify_cost"]) == d.verdict.verify_cost
    assert d.verdict.verify_cost == d.verify_cost["bf16"] and d.verify_cost["bf16"].spread


def test_verify_cost_sentences():
    assert "grows slowly" in explain.explain_verify_cost({1: 60.0, 8: 70.0})
    assert "grows noticeably" in explain.explain_verify_cost({1: 60.0, 8: 150.0})
    assert "almost with k" in explain.explain_verify_cost({1: 75.0, 8: 340.0})  # the AVX2-only machine


def test_choose_threads_probes_now_and_every_caller_agrees(monkeypatch):
    """Issue 16: the thread choice is a probe, not the lagging load average, and the CLI, the notebooks and the
    doctor share it (cached for a minute)."""
    from labkit import threads

    monkeypatch.delenv("LABKIT_THREADS", raising=False)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.setattr(threads, "_CHOSEN", {})
    calls = []
    monkeypatch.setattr(threads, "matvec_probe", lambda: (lambda: calls.append(1) or
                                                           (1.0 if torch.get_num_threads() == 2 else 2.0)))
    monkeypatch.setattr(threads, "load_average", lambda: 1.9)  # a lagging load average would say 1 thread
    n, medians = threads.choose_threads()
    assert n == 2 and medians == {1: 2.0, 2: 1.0} and len(calls) == 10  # 5 interleaved rounds x 2 counts
    assert threads.choose_threads() == (2, medians) and len(calls) == 10  # the session's choice, not a new probe
    assert threads.choose_threads(refresh=True)[0] == 2 and len(calls) == 20  # the doctor measures afresh
    monkeypatch.setenv("LABKIT_THREADS", "1")
    assert threads.choose_threads() == (1, {})
