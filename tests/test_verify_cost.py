"""The one verify-cost type (labkit.core.verify_cost): T(k+1)/T(1) keyed by draft length k."""

import json

import pytest

from labkit.core.verify_cost import VerifyCost, as_verify_cost, monotone


def test_at_interpolates_between_measured_ks_and_is_one_at_zero():
    cost = VerifyCost({1: 1.2, 4: 1.8})
    assert cost.at(0) == 1.0
    assert cost.at(1) == pytest.approx(1.2) and cost.at(4) == pytest.approx(1.8)
    assert cost.at(2) == pytest.approx(1.4) and cost.at(3) == pytest.approx(1.6)
    assert cost.at(2.5) == pytest.approx(1.5)  # a mean draft length
    assert cost.at(0.5) == pytest.approx(1.1)  # between V(0) = 1 and the first measured k


def test_at_extrapolates_with_the_last_segments_slope():
    assert VerifyCost({1: 1.2, 4: 1.8}).at(6) == pytest.approx(2.2)
    assert VerifyCost({2: 1.5}).at(4) == pytest.approx(2.0)  # one point: the line from V(0) = 1 through it


def test_upto_gives_every_k():
    assert VerifyCost({1: 1.2, 4: 1.8}).upto(5) == pytest.approx({1: 1.2, 2: 1.4, 3: 1.6, 4: 1.8, 5: 2.0})


def test_from_measured_clamps_at_one_and_makes_the_curve_non_decreasing():
    raw = {1: 0.8, 2: 1.2, 3: 1.1, 4: 1.3}
    cost = VerifyCost.from_measured(raw, {1: 0.1, 2: 0.05}, source="test", where="here")
    assert cost.raw == raw and cost.spread == {1: 0.1, 2: 0.05}  # the measured medians are kept as measured
    assert cost.ratios == pytest.approx({1: 1.0, 2: 1.15, 3: 1.15, 4: 1.3})
    assert all(v >= 1.0 for v in cost.ratios.values())
    assert cost.source == "test" and cost.where == "here"
    assert cost.interval(1) == pytest.approx((0.75, 0.85))  # the raw median +- half the spread
    assert cost.interval(4) == pytest.approx((1.3, 1.3))  # no spread measured there


def test_monotone_is_the_closest_non_decreasing_curve():
    assert monotone({1: 1.0, 2: 1.2, 3: 1.1, 4: 1.3}) == pytest.approx({1: 1.0, 2: 1.15, 3: 1.15, 4: 1.3})
    assert monotone({1: 1.5, 2: 1.0}) == pytest.approx({1: 1.25, 2: 1.25})
    already = {1: 1.0, 2: 1.1, 4: 1.2}
    assert monotone(already) == already


def test_json_round_trip_keeps_int_keys():
    cost = VerifyCost.from_measured({1: 1.05, 2: 1.1, 4: 1.2}, {1: 0.02, 2: 0.03, 4: 0.04}, "reference", "cpu")
    back = VerifyCost.from_dict(json.loads(json.dumps(cost.as_dict())))
    assert back == cost and all(isinstance(k, int) for k in back.ratios)


def test_free_and_as_verify_cost():
    free = VerifyCost.free()
    assert free.ratios == {} and free.at(8) == 1.0 and free.upto(3) == {1: 1.0, 2: 1.0, 3: 1.0}
    assert as_verify_cost(None).ratios == {}
    cost = VerifyCost({1: 1.1})
    assert as_verify_cost(cost) is cost
    assert as_verify_cost({"2": 1.3}).ratios == {2: 1.3}  # an old {k: ratio} mapping, JSON keys and all


def test_text_names_tokens_in_the_forward():
    assert VerifyCost({1: 1.05, 4: 1.1}, {1: 0.04}).text() == "2 tokens 1.05x ±0.02, 5 tokens 1.10x"


@pytest.mark.parametrize("bad", [{0: 1.0}, {1: 0.0}, {2: -1.0}])
def test_keys_are_draft_lengths_with_positive_ratios(bad):
    with pytest.raises(ValueError, match="verify cost: "):
        VerifyCost(bad)
