"""The committed notebooks are executed, carry no widget state, open without a kernel dialog, and end with a check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = [
    "00_quickstart", "01_why_verify_is_cheap", "02_draft_verify_step_by_step", "03_is_it_lossless",
    "04_mtp_drafters", "05_kv_cache_reuse", "06_speed_vs_draft_length", "07_train_your_own_mtp_head",
]
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _code(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_every_notebook_is_there():
    """The eight core notebooks exist, and every source in notebooks/src has its built notebook (and vice versa)."""
    stems = [p.stem for p in NOTEBOOKS]
    assert [s for s in stems if s in EXPECTED] == EXPECTED, stems
    sources = sorted(p.stem for p in (NB_DIR / "src").glob("[0-9][0-9]_*.py"))
    assert stems == sources, f"notebooks {stems} vs sources {sources}: build the missing ones with notebooks/build.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_widget_state(path):
    nb = _load(path)
    assert "widgets" not in nb.get("metadata", {}), (
        f"{path.name} keeps metadata.widgets (megabytes of widget JS): "
        "nbstripout --keep-output --keep-count --extra-keys metadata.widgets")
    assert path.stat().st_size < 1_500_000, f"{path.name} is {path.stat().st_size} bytes: an embedded figure?"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_code_cell_executed(path):
    nb = _load(path)
    missing = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and c.get("execution_count") is None]
    assert not missing, f"{path.name}: unexecuted code cells {missing} (nbval would not compare them)"
    counts = [c["execution_count"] for c in _code(nb)]
    assert counts == sorted(counts), f"{path.name}: executed out of order {counts}"
    errors = [i for i, c in enumerate(_code(nb)) for o in c.get("outputs", []) if o.get("output_type") == "error"
              and "raises-exception" not in c.get("metadata", {}).get("tags", [])]
    assert not errors, f"{path.name}: committed with errors in code cells {errors}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_kernelspec_question_and_check(path):
    nb = _load(path)
    ks = nb["metadata"].get("kernelspec", {})
    assert ks.get("name") == "python3", f"{path.name}: kernelspec missing (JupyterLab would ask for a kernel)"
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and "**Question.**" in "".join(first["source"]), \
        f"{path.name}: the first cell states the question"
    last = "".join(_code(nb)[-1]["source"])
    assert "assert " in last, f"{path.name}: ends with a check the reader runs"


def test_same_setup_cell_everywhere():
    firsts = {"".join(_code(_load(p))[0]["source"]) for p in NOTEBOOKS}
    assert len(firsts) == 1, "the first code cell differs between notebooks"
    cell = firsts.pop()
    assert '"google.colab" in sys.modules' in cell and "enable_custom_widget_manager" in cell


def test_notebooks_match_their_sources():
    """notebooks/src/NN_*.py is where notebooks are edited; the committed .ipynb must be built from it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nb_build", NB_DIR / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for path in NOTEBOOKS:
        src = NB_DIR / "src" / (path.stem + ".py")
        assert src.exists(), f"{src} missing"
        want = [(c.cell_type, c.source) for c in build.parse(src).cells]
        have = [(c["cell_type"], "".join(c["source"])) for c in _load(path)["cells"]]
        assert have == want, f"{path.name} differs from {src.name}: rebuild with notebooks/build.py {path.stem[:2]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_plotly_javascript_committed(path):
    """Figures are saved as plotly JSON (drawn by JupyterLab without a kernel), never with plotly.js inside."""
    for i, cell in enumerate(_code(_load(path))):
        for out in cell.get("outputs", []):
            html = "".join(out.get("data", {}).get("text/html", ""))
            assert "window.PlotlyConfig" not in html and len(html) < 300_000, \
                f"{path.name} cell {i}: plotly.js embedded in the output (use the plotly_mimetype renderer)"


SPEED_NOTEBOOKS = ["00_quickstart", "04_mtp_drafters", "06_speed_vs_draft_length"]


@pytest.mark.parametrize("name", SPEED_NOTEBOOKS)
def test_speed_notebooks_show_text_repetition_and_measured_sentences(name):
    """Issue 12: each speed notebook prints the generated text, measures its repetition, uses the verify cost
    measured in the same run, and says what the speed means through a sentence chosen from its numbers."""
    src = (NB_DIR / "src" / f"{name}.py").read_text(encoding="utf-8")
    for needle in ("repetition(", "explain_speed(", "reference(", ".text"):
        assert needle in src, f"{name}: no {needle}"
    outputs = "".join("".join(o.get("text", "")) for c in _code(_load(NB_DIR / f"{name}.ipynb"))
                      for o in c.get("outputs", []))
    assert "of the generated 4-grams" in outputs, f"{name}: the repetition sentence is not in the executed notebook"
    assert "plain decoding" in outputs and ("as fast as" in outputs or "slower than" in outputs
                                            or "about even" in outputs or "Measurement problem" in outputs)


def test_verify_cost_notebooks_show_the_doctor_verdict():
    for name in ("01_why_verify_is_cheap", "06_speed_vs_draft_length"):
        outputs = "".join("".join(o.get("text", "")) for c in _code(_load(NB_DIR / f"{name}.ipynb"))
                          for o in c.get("outputs", []))
        assert "verify cost T(n)/T(1)" in outputs, f"{name}: no machine reference printed"


def _build_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("nb_build", NB_DIR / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_say_where_they_were_measured(path):
    """Issue 16: the first output records machine, load average and date; the build's load is in the metadata, and
    a notebook built on a busy machine says so in its first output."""
    nb = _load(path)
    first = "".join("".join(o.get("text", "")) for o in _code(nb)[0].get("outputs", []))
    assert "run on " in first and "load average" in first and "cores" in first, f"{path.name}: no run record"
    meta = nb["metadata"].get("labkit_build")
    assert meta is not None, f"{path.name}: not built by notebooks/build.py"
    quiet = meta["load_average_before"] < _build_module().LOAD_PER_CORE * meta["cores"]
    assert quiet or "WARNING: built on a busy machine" in first, f"{path.name}: busy build without a warning"


def test_build_refuses_a_busy_machine_and_warns_when_allowed(tmp_path, monkeypatch):
    build = _build_module()
    src = tmp_path / "99_probe.py"
    src.write_text("# %% [markdown]\n# **Question.** probe\n\n# %%\nprint('hi')\n", encoding="utf-8")
    monkeypatch.setattr(build.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    with pytest.raises(build.BusyMachine, match="load average 9.00"):
        build.build(src, max_wait=0, out_dir=tmp_path)
    assert not (tmp_path / "99_probe.ipynb").exists()
    build.build(src, max_wait=0, allow_busy=True, out_dir=tmp_path)
    nb = _load(tmp_path / "99_probe.ipynb")
    first = "".join("".join(o.get("text", "")) for o in _code(nb)[0]["outputs"])
    assert "WARNING: built on a busy machine (load average 9.00" in first and "hi" in first
    assert nb["metadata"]["labkit_build"]["load_average_before"] == 9.0
