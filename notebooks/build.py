"""Build the notebooks from their sources in ``notebooks/src/*.py`` (percent format), execute, strip widget state.

    .venv/bin/python notebooks/build.py            # every notebook
    .venv/bin/python notebooks/build.py 03 05      # the ones whose name starts with 03 or 05
    .venv/bin/python notebooks/build.py --no-run   # convert only
    .venv/bin/python notebooks/build.py --markdown-only 07   # prose edits: keep the executed code cells
    .venv/bin/python notebooks/build.py --allow-busy 06      # build on a busy machine, with a warning inside

Committed outputs come from a quiet machine: before each notebook the build waits (up to ``--wait`` seconds) for
the 1-minute load average to fall below LOAD_PER_CORE x cores, and refuses otherwise; ``--allow-busy`` builds
anyway and writes a visible warning into the notebook's first output. The first cell prints the run's record
(machine, load average, threads, date); the build stores the load it saw in the notebook's metadata.

Sources are the place to edit: plain Python files diff and review well; the committed .ipynb carry executed
outputs (nbval compares against them) without widget state (it is megabytes of JavaScript per FigureWidget).
Cell markers: ``# %%`` (code), ``# %% [markdown]`` (markdown, every line starts with "# "), optional
``tags=["raises-exception"]`` after the marker, and ``# %% labkit-first-cell``: the set-up cell every notebook
shares (Colab install, widgets, device), kept once in ``src/_first_cell.py``.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
FIRST_CELL = "# %% labkit-first-cell"
MARK = re.compile(r"^# %%(?P<md> \[markdown\])?(?:\s+tags=(?P<tags>\[.*\]))?\s*$")

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LOAD_PER_CORE = 0.3  # a quiet machine: other work keeps less than a third of each core busy


def quiet_threshold() -> float:
    return LOAD_PER_CORE * (os.cpu_count() or 1)


def wait_for_quiet(max_wait: float) -> float:
    """Wait until the 1-minute load average is under the threshold (other jobs, or the last notebook, settling);
    returns the load average it ended at."""
    t0 = time.monotonic()
    while True:
        load = os.getloadavg()[0]
        if load < quiet_threshold() or time.monotonic() - t0 >= max_wait:
            return load
        print(f"  waiting for a quiet machine: load average {load:.2f} (needs < {quiet_threshold():.2f})",
              flush=True)
        time.sleep(10)


def parse(path: Path) -> nbformat.NotebookNode:
    cells, kind, tags, buf = [], None, [], []

    def flush() -> None:
        if kind is None:
            return
        text = "\n".join(buf).strip("\n")
        if kind == "markdown":
            text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in text.splitlines())
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            cell = nbformat.v4.new_code_cell(text)
        if tags:
            cell.metadata["tags"] = tags
        cells.append(cell)

    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() == FIRST_CELL:
            flush()
            kind, tags, buf = "code", [], (SRC / "_first_cell.py").read_text(encoding="utf-8").splitlines()
            continue
        m = MARK.match(line)
        if m:
            flush()
            kind = "markdown" if m.group("md") else "code"
            tags = json.loads(m.group("tags")) if m.group("tags") else []
            buf = []
        elif kind is not None:
            buf.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = KERNELSPEC  # without it JupyterLab opens a "Select Kernel" dialog
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop widget state and per-run metadata (what nbstripout --keep-output --extra-keys metadata.widgets does)."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            out.get("metadata", {}).pop("execution", None)
    return nb


class BusyMachine(RuntimeError):
    pass


def build(src: Path, run: bool = True, timeout: int = 900, allow_busy: bool = False, max_wait: float = 300,
          out_dir: Path = HERE) -> float:
    nb = parse(src)
    out = out_dir / (src.stem + ".ipynb")
    seconds = 0.0
    if run:
        from nbclient import NotebookClient

        load = wait_for_quiet(max_wait)
        busy = load >= quiet_threshold()
        if busy and not allow_busy:
            raise BusyMachine(f"{src.stem}: load average {load:.2f} >= {quiet_threshold():.2f} after waiting "
                              f"{max_wait:.0f} s; committed outputs need a quiet machine (stop other work, or pass "
                              "--allow-busy to build with a warning in the notebook)")
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(HERE)}}).execute()
        seconds = time.perf_counter() - t0
        nb.metadata["labkit_build"] = {"load_average_before": math.floor(load * 1000) / 1000, "cores": os.cpu_count(),
                                       "date": time.strftime("%Y-%m-%d %H:%M"), "seconds": round(seconds)}
        if busy:
            first = next(c for c in nb.cells if c.cell_type == "code")
            first.outputs.insert(0, nbformat.v4.new_output(
                "stream", name="stderr", text=f"WARNING: built on a busy machine (load average {load:.2f} on "
                f"{os.cpu_count()} cores): the timings and speed sentences below include waiting for a core.\n"))
    nbformat.write(strip(nb), out)
    return seconds


def sync_markdown(src: Path) -> bool:
    """Take the markdown cells from the source, keep the executed code cells: for prose-only edits. False (and
    nothing written) when a code cell changed, which needs a real run."""
    new, out = parse(src), HERE / (src.stem + ".ipynb")
    old = nbformat.read(out, as_version=4)
    if [(c.cell_type, c.source) for c in new.cells if c.cell_type == "code"] != \
            [(c.cell_type, c.source) for c in old.cells if c.cell_type == "code"]:
        return False
    code = iter(c for c in old.cells if c.cell_type == "code")
    old.cells = [c if c.cell_type == "markdown" else next(code) for c in new.cells]
    nbformat.write(strip(old), out)
    return True


def main(argv: list[str]) -> int:
    if "--markdown-only" in argv:
        for src in sorted(SRC.glob("[0-9]*.py")):
            if any(src.stem.startswith(p) for p in argv if not p.startswith("--")) or len(argv) == 1:
                print(src.stem, "markdown synced" if sync_markdown(src) else "code changed: rebuild it")
        return 0
    run = "--no-run" not in argv
    allow_busy = "--allow-busy" in argv
    wait = next((float(a.split("=", 1)[1]) for a in argv if a.startswith("--wait=")), 300.0)
    picks = [a for a in argv if not a.startswith("--")]
    for src in sorted(SRC.glob("[0-9]*.py")):
        if picks and not any(src.stem.startswith(p) for p in picks):
            continue
        try:
            secs = build(src, run, allow_busy=allow_busy, max_wait=wait)
        except BusyMachine as e:
            print(f"refused: {e}", file=sys.stderr)
            return 2
        print(f"{src.stem}.ipynb" + (f"  executed in {secs:.0f}s" if run else ""), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
