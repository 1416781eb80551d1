"""Loading targets: the embedded Gemma 3 270M, any Hugging Face id or local path, and tiny random models."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from labkit.models.embedded import EMBEDDED, prepare_embedded


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
    def weight_format(self) -> str:
        """'int8' for int8 weight-only targets (``dtype="int8"``), else the dtype (e.g. 'torch.bfloat16')."""
        from labkit.models.int8 import is_int8

        return "int8" if is_int8(self.model) else str(self.dtype)

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


def default_dtype(device: torch.device | str) -> torch.dtype:
    """bf16 on CPU (a one-token forward 2.5x as fast as fp32 on the reference machine, which has native bf16) and
    on GPUs with fast bf16; fp16 on older GPUs (T4: sm 7.5)."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.get_device_capability(dev)[0] < 8:
        return torch.float16  # bf16 is emulated before Ampere: several times slower than fp16
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
            raise ValueError(f"dtype: unknown value {dtype!r}; allowed: {sorted([*table, 'int8'])}")
        return table[dtype]
    return dtype


def resolve(name: str) -> str:
    """Where a Hugging Face id is loaded from: the id itself (tests point ids at local folders by patching this)."""
    return name


def hub_error(name: str, e: BaseException, what: str = "model") -> ModelNotAvailableError:
    """One line saying what to do about a failed hub load: gated (accept terms, log in), offline, or missing."""
    chain, x = [], e
    while x is not None and len(chain) < 8:
        chain.append(x)
        x = x.__cause__ or x.__context__
    names = {type(x).__name__ for x in chain}
    text = " ".join(str(x) for x in chain).lower()
    if "GatedRepoError" in names or "gated repo" in text:
        return ModelNotAvailableError(
            f"{what}: {name!r} is gated on the Hugging Face hub: accept its terms at https://huggingface.co/{name} "
            "(signed in), then call huggingface_hub.login() or, on Colab, add an HF_TOKEN secret (key icon) and "
            "restart the runtime")
    if "LocalEntryNotFoundError" in names or "offline" in text or "couldn't connect" in text:
        alt = "; offline, use the embedded 'gemma3-270m'" if what == "model" else ""
        return ModelNotAvailableError(
            f"{what}: cannot load {name!r}: not in the local cache and the hub is unreachable (offline); download "
            f"it once with internet (huggingface-cli download {name}) or pass a local folder{alt}")
    return ModelNotAvailableError(
        f"{what}: cannot load {name!r} ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
        "pass a Hugging Face id with safetensors weights or a local folder")


def load_target(
    name: str = "gemma3-270m",
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> Target:
    """Load a target model by embedded name, Hugging Face id or local path.

    bf16 by default (faster than fp32 on CPUs with native bf16; `labkit doctor` measures both); pass
    ``dtype="fp32"`` for bit-exact comparisons, ``dtype="int8"`` for int8 weight-only linear layers and LM head with
    bf16 activations (about half the bytes per token: labkit.models.int8).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model: expected a non-empty name, got {name!r}")
    dev = torch.device(device) if device is not None else default_device()
    int8 = isinstance(dtype, str) and dtype == "int8"
    dt = _resolve_dtype("bf16" if int8 else dtype, dev)
    if name in EMBEDDED:
        path: str | Path = prepare_embedded(name, progress=progress)
        local_only = True
    elif os.path.isdir(name):
        path, local_only = name, True
    elif "/" in name and not name.startswith((".", "/")):
        path = resolve(name)
        local_only = os.path.isdir(path)
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
        raise hub_error(name, e) from None
    model = model.to(dev).eval()
    if int8:
        from labkit.models.int8 import quantize_int8

        quantize_int8(model)
    target = Target(model, tok, name)
    target.load_seconds = time.perf_counter() - t0  # type: ignore[attr-defined]
    return target
