"""What every notebook's first cell sets up: threads, quiet libraries, the run's record, static figure images."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from typing import Any


def notebook_setup(threads: int | None = None, quiet: bool = True, record: bool = True) -> str:
    """What every notebook's first cell does after installing labkit; returns the device to use ("cuda"/"cpu").

    Picks torch's threads by labkit's one probe (labkit.threads), silences load-time progress bars and deprecation
    chatter so executed notebooks show only what the lesson is about, and prints the run's record (``record``):
    machine, load average, threads and date, so every saved output says where its numbers were measured.
    """
    import torch

    from labkit.threads import set_threads

    n = set_threads(threads or "auto")
    if record:
        print(run_record(n))
    if quiet:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
        with contextlib.suppress(Exception):
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
    import plotly.io as pio

    # Static figures as plotly JSON (JupyterLab's plotly extension draws them): the "notebook" renderer would
    # embed ~4 MB of plotly.js into every saved notebook. Colab has its own renderer. Next to the JSON, a PNG
    # (kaleido + a system Chrome) so that nbconvert HTML and GitHub, which cannot run plotly, show the figure too.
    pio.renderers.default = "colab" if in_colab() else (
        "plotly_mimetype+png" if static_images() else "plotly_mimetype")
    return "cuda" if torch.cuda.is_available() else "cpu"


def static_images(width: int = 760, height: int = 440) -> bool:
    """Start kaleido's browser once for this kernel (PNG copies of figures); False where there is no Chrome or
    Chromium to draw with (the figures then stay plotly JSON only). The browser stops when the kernel exits."""
    import atexit

    if not _have_browser():  # kaleido would wait for one (or try to download one) at the first figure
        return False
    try:
        import kaleido
        import plotly.io as pio

        kaleido.start_sync_server(silence_warnings=True)
        # plotly passes its default browser options, which a running server ignores (and says so, per figure)
        warnings.filterwarnings("ignore", message="The kopts argument is ignored")
        atexit.register(kaleido.stop_sync_server, silence_warnings=True)
        png = pio.renderers["png"]
        png.width, png.height = width, height
        return True
    except Exception:  # noqa: BLE001  (no browser, no kaleido: interactive figures only)
        return False


def _have_browser() -> bool:
    """A Chrome or Chromium kaleido can draw with: on PATH, at $BROWSER_PATH, macOS's app, or kaleido's own copy."""
    import os
    import shutil
    from pathlib import Path

    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "msedge")
    if os.environ.get("BROWSER_PATH") or any(shutil.which(n) for n in names):
        return True
    if Path("/Applications/Google Chrome.app").exists():
        return True
    try:
        from choreographer.browsers.chromium import get_chrome_download_path

        path = get_chrome_download_path()
        return path is not None and Path(path).exists()
    except Exception:  # noqa: BLE001  (another choreographer: no downloaded copy to find)
        return False


def run_record(threads: int | None = None) -> str:
    """One line: where and when this notebook ran (CPU, cores, 1-minute load average, threads, torch, date)."""
    import platform

    import torch

    from labkit.threads import cores, cpu_info, load_average

    load = load_average()
    dev = f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else cpu_info()[0]
    return (f"run on {dev} ({platform.machine()}), {cores()} cores, load average "
            f"{'unknown' if load is None else f'{load:.2f}'}, {threads or torch.get_num_threads()} thread(s), "
            f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}")


def ci_scale(full: Any, ci: Any) -> Any:
    """``ci`` when LABKIT_CI is set (the notebook test run), else ``full``: heavy cells shrink, never skip."""
    return ci if os.environ.get("LABKIT_CI", "") not in ("", "0") else full


def in_colab() -> bool:
    return "google.colab" in sys.modules
