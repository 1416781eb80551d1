"""The one machine reference (labkit.measure.machine): interleaved, with spreads, non-decreasing, cached."""

import json

import pytest

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
    assert [r["k"] for r in rows] == [1, 2] and all(r["ms"] > 0 and r["iqr_ms"] >= 0 for r in rows)


def test_monotone_is_the_closest_non_decreasing_curve():
    assert machine.monotone({1: 1.0, 2: 1.2, 3: 1.1, 4: 1.3}) == pytest.approx({1: 1.0, 2: 1.15, 3: 1.15, 4: 1.3})
    assert machine.monotone({1: 1.5, 2: 1.0}) == pytest.approx({1: 1.25, 2: 1.25})
    already = {1: 1.0, 2: 1.1, 4: 1.2}
    assert machine.monotone(already) == already


def test_reference_is_measured_once_then_cached_in_process_and_on_disk(cache_home):
    t = Target(tiny_model(), None, "tiny")
    first = machine.reference(t, ks=(1, 2, 4), rounds=4, copy_megabytes=4)
    assert first.source == "measured now" and first.rounds == 4
    assert sorted(first.curve) == [1, 2, 4] and all(v >= 1.0 for v in first.curve.values())
    ks = sorted(first.curve)
    assert all(first.curve[a] <= first.curve[b] for a, b in zip(ks, ks[1:], strict=False))  # non-decreasing
    assert set(first.spread) == set(first.raw) == {1, 2, 4} and first.copy_gb_s > 0 and first.load is not None
    again = machine.reference(t, ks=(1, 2, 4), rounds=4, copy_megabytes=4)
    assert again.source == "cached in this process" and again.raw == first.raw
    machine.clear_process_cache()  # a new process (another notebook) reads the disk entry
    from_disk = machine.reference(t, ks=(1, 2, 4), rounds=4, copy_megabytes=4)
    assert from_disk.source.startswith("cached on disk") and from_disk.curve == first.curve
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
    assert ref.source == "measured now" and json.loads(path.read_text())["curve"]


def test_surprises_name_a_verify_cheaper_than_one_token():
    base = dict(ms={}, one_token_ms=1.0, one_token_spread_ms=0.1, copy_gb_s=1.0, copy_spread_gb_s=0.1, rounds=8,
                model="m", dtype="bf16", device="cpu", threads=2, cpu="c", torch="t", when="now", load=0.1)
    raw = {1: 1.0, 2: 0.8, 4: 1.2}
    ref = machine.Reference(curve=machine.monotone({k: max(1, v) for k, v in raw.items()}), raw=raw,
                            spread={1: 0.02, 2: 0.05, 4: 0.03}, **base)
    notes = machine.surprises(ref)
    assert any("cheaper than over one" in n and "3 tokens 0.80x" in n for n in notes), notes
    quiet = machine.Reference(curve={1: 1.0, 2: 1.05}, raw={1: 1.0, 2: 1.05}, spread={1: 0.02, 2: 0.02}, **base)
    assert machine.surprises(quiet) == []
    assert machine.agrees(quiet, quiet) and not machine.agrees(quiet, ref)
