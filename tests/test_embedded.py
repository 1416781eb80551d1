from pathlib import Path

from labkit.models.embedded import cache_dir


def test_env_variable_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x"


def test_default_is_the_user_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("LABKIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "labkit"  # platformdirs follows XDG on Linux
    (tmp_path / ".cache" / "labkit").mkdir(parents=True)
    assert cache_dir() == Path(tmp_path) / ".cache" / "labkit"  # an existing ~/.cache/labkit keeps working
