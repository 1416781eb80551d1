"""`labkit bench` (labkit.cli.bench): arguments to settings, one-line errors, a quick run end to end."""

import json

import pytest


def _keys(rows):
    return {(r["engine"], r["method"], r["k"], r["policy"], r["category"]) for r in rows}


def test_cli_quick(tmp_path, capsys):
    from labkit.cli import main

    rc = main(["bench", "--quick", "--ks", "0,2", "--categories", "qa", "--repeats", "1", "--drafters", "ngram",
               "--hf-modes", "greedy,prompt-lookup", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "labkit ngram k=2" in out and "transformers prompt-lookup k=2" in out
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert _keys(rows) == {(e, m, k, p, c) for e, m, k, p in [
        ("transformers", "greedy", 0, ""), ("labkit", "plain", 0, ""), ("labkit", "ngram", 2, ""),
        ("labkit", "ngram", 2, "auto"), ("transformers", "prompt-lookup", 2, "")] for c in ("qa", "all")}


def test_cli_specs_keep_their_own_ks():
    import argparse

    from labkit.cli.bench import _csv_specs

    assert _csv_specs("ngram@4,8,16,mtp@2,4,early-exit") == ("ngram@4,8,16", "mtp@2,4", "early-exit")
    assert _csv_specs("greedy,prompt-lookup") == ("greedy", "prompt-lookup")
    with pytest.raises(argparse.ArgumentTypeError, match="bare number 4"):
        _csv_specs("ngram,4")


def test_cli_policies_none_and_unknown(tmp_path, capsys):
    from labkit.cli import main

    assert main(["bench", "--quick", "--policies", "none", "--ks", "0,2", "--drafters", "ngram", "--hf-modes",
                 "greedy", "--categories", "qa", "--out", str(tmp_path)]) == 0
    assert " auto " not in capsys.readouterr().out
    assert main(["bench", "--quick", "--policies", "fastest", "--out", str(tmp_path)]) == 2
    assert "policies: unknown fastest" in capsys.readouterr().err



def test_cli_drafter_specs_are_checked_before_anything_loads(tmp_path, capsys):
    from labkit.cli import main

    assert main(["bench", "--quick", "--drafters", "ngram,hybrid:3:auto:many", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model_k must be 'auto'" in err, err


def test_settings_from_args_keeps_quick_overrides():
    import argparse

    from labkit.cli.bench import register, settings_from_args

    ap = argparse.ArgumentParser()
    register(ap.add_subparsers(dest="command"))
    s = settings_from_args(ap.parse_args(["bench", "--quick", "--ks", "0,3", "--drafters", "ngram@2,4,mtp",
                                          "--policies", "none", "--temperature", "1"]))
    assert s.quick and s.ks == (0, 3) and s.drafters == ("ngram@2,4", "mtp") and s.policies == ()
    assert s.temperature == 1.0 and s.model == "tiny"
