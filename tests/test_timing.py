from labkit.measure.timing import verify_cost_curve
from labkit.models.tiny import tiny_model


def test_verify_cost_curve_ratios_per_k():
    curve = verify_cost_curve(tiny_model(), ks=(1, 2, 4), context=8, repeats=2)
    assert sorted(curve) == [1, 2, 4]
    # a ratio of times: positive and finite; cheap forwards are noisy, so no ordering is asserted
    assert all(0 < v < 1e3 for v in curve.values())
