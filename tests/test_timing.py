"""The one machine reference (labkit.measure.machine): interleaved, with spreads, non-decreasing, cached."""

import json

import pytest

from labkit.core.verify_cost import VerifyCost
from labkit.measure import machine
from labkit.measure.timing import forward_times, time_forward
from labkit.models.load import Target
from labkit.models.tiny import tiny_model


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setattr("labkit.models.embedded.cache_dir", lambda: tmp_path)
    monkeypatch.setattr(machine, "load_average", lambda: 0.1)  # a quiet machine, whatever the test run does
    machine.clear_process_cache()
    yield tmp_path
    machine.clear_process_cache()


def test_forward_times_are_interleaved_per_n():
    times = forward_times(tiny_model(), [1, 3, 5], context=8, rounds=3)
    assert sorted(times) == [1, 3, 5] and all(len(v) == 3 and min(v) > 0 for v in times.values())
    rows = time_forward(tiny_model(), [1, 2], context=8, repeats=4)
    assert [r["n"] for r in rows] == [1, 2] and [r["k"] for r in rows] == [0, 1]  # k = n - 1: the verify's draft
    assert all(r["ms"] > 0 and r["iqr_ms"] >= 0 for r in rows)


def test_reference_is_measured_once_then_cached_in_process_and_on_disk(cache_home):
    t = Target(tiny_model(), None, "tiny")
    first = machine.reference(t, ks=(1, 2, 4), rounds=4, copy_megabytes=4)
    assert first.source == "measured now" and first.rounds == 4
    cost = first.verify_cost
    assert sorted(cost.ratios) == [1, 2, 4] and all(v >= 1.0 for v in cost.ratios.values())
    ks = sorted(cost.ratios)
    assert all(cost.ratios[a] <= cost.ratios[b] for a, b in zip(ks, ks[1:], strict=False))  # non-decreasing
    assert set(cost.spread) == set(cost.raw) == {1, 2, 4} and first.copy_gb_s > 0 and first.load is not None
    assert set(first.ms_by_n) == {1, 2, 3, 5}  # keyed by n = k + 1 tokens in the forward
    again = machine.reference(t, ks=(1, 2, 4), rounds=4, copy_megabytes=4)
    assert again.source == "cached in this process" and again.verify_cost.raw == first.verify_cost.raw
    machine.clear_process_cache()  # a new process (another notebook) reads the disk entry
    from_disk = machine.reference(t, ks=(1, 2, 4), rounds=4, copy_megabytes=4)
    assert from_disk.source.startswith("cached on disk") and from_disk.verify_cost == first.verify_cost
    assert from_disk.when == first.when and "load average" in from_disk.text()
    fresh = machine.reference(t, ks=(1, 2, 4), rounds=4, copy_megabytes=4, refresh=True)
    assert fresh.source == "measured now"


def test_a_busy_measurement_is_not_reused_on_a_quiet_machine(cache_home, monkeypatch):
    t = Target(tiny_model(), None, "tiny")
    monkeypatch.setattr(machine, "load_average", lambda: 5.0)
    busy = machine.reference(t, ks=(1, 2), rounds=3, copy_megabytes=4)
    assert busy.load == 5.0
    machine.clear_process_cache()
    assert machine.reference(t, ks=(1, 2), rounds=3, copy_megabytes=4).source.startswith("cached on disk")  # busy
    machine.clear_process_cache()
    monkeypatch.setattr(machine, "load_average", lambda: 0.1)  # quiet now: measure again rather than reuse
    again = machine.reference(t, ks=(1, 2), rounds=3, copy_megabytes=4)
    assert again.source == "measured now" and again.load == 0.1


def test_a_damaged_disk_entry_is_measured_again(cache_home):
    t = Target(tiny_model(), None, "tiny")
    path = cache_home / "machine" / f"{machine.key(t, (1, 2))}.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    ref = machine.reference(t, ks=(1, 2), rounds=3, copy_megabytes=4)
    assert ref.source == "measured now" and json.loads(path.read_text())["verify_cost"]["ratios"]


def test_surprises_name_a_verify_cheaper_than_one_token():
    base = dict(ms_by_n={}, one_token_ms=1.0, one_token_spread_ms=0.1, copy_gb_s=1.0, copy_spread_gb_s=0.1, rounds=8,
                model="m", dtype="bf16", device="cpu", threads=2, cpu="c", torch="t", when="now", load=0.1)
    raw = {1: 1.0, 2: 0.8, 4: 1.2}
    ref = machine.Reference(verify_cost=VerifyCost.from_measured(raw, {1: 0.02, 2: 0.05, 4: 0.03}), **base)
    notes = machine.surprises(ref)
    assert any("cheaper than over one" in n and "3 tokens 0.80x" in n for n in notes), notes
    quiet = machine.Reference(verify_cost=VerifyCost({1: 1.0, 2: 1.05}, {1: 0.02, 2: 0.02}, {1: 1.0, 2: 1.05}),
                              **base)
    assert machine.surprises(quiet) == []
    assert machine.agrees(quiet, quiet) and not machine.agrees(quiet, ref)


def test_reference_from_dict_reads_its_json_and_an_older_labkits():
    base = dict(one_token_ms=1.0, one_token_spread_ms=0.1, copy_gb_s=1.0, copy_spread_gb_s=0.1, rounds=8, model="m",
                dtype="bf16", device="cpu", threads=2, cpu="c", torch="t", when="now", load=0.1)
    ref = machine.Reference(verify_cost=VerifyCost.from_measured({1: 1.1, 2: 1.05}, {1: 0.02, 2: 0.04}),
                            ms_by_n={1: 10.0, 2: 11.0, 3: 10.5}, **base)
    assert machine.Reference.from_dict(json.loads(json.dumps(ref.as_dict()))) == ref
    old = {**base, "curve": {"1": 1.075, "2": 1.075}, "raw": {"1": 1.1, "2": 1.05}, "spread": {"1": 0.02, "2": 0.04},
           "ms": {"1": 10.0, "2": 11.0, "3": 10.5}}  # a bench result's machine_reference before VerifyCost
    back = machine.Reference.from_dict(old)
    assert back.verify_cost.ratios == pytest.approx(ref.verify_cost.ratios) and back.ms_by_n == ref.ms_by_n
    assert back.verify_cost.raw == ref.verify_cost.raw and back.verify_cost.spread == ref.verify_cost.spread
