"""labkit.cli.train: the train-mtp command (needs the labkit.cli package: runs once the CLI parts are merged)."""

import subprocess
import sys


def test_cli_registers_and_reports_errors_in_one_line(tmp_path):
    (tmp_path / "run" / "data").mkdir(parents=True)
    r = subprocess.run([sys.executable, "-m", "labkit", "train-mtp", "--out", str(tmp_path / "run"), "--steps", "5"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "pass --resume" in r.stderr


def test_flags_make_the_config_and_bad_steps_are_one_line(tmp_path, capsys):
    from labkit.cli import main
    from labkit.cli.train import layer_list

    assert layer_list("none") == () and layer_list("2,9,15") == (2, 9, 15)
    assert main(["train-mtp", "--out", str(tmp_path / "run"), "--steps", "0"]) == 2
    assert "--steps: must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
