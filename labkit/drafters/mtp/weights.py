"""The MTP head's weight files: format, shipped names, and the checks that they fit the target."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from labkit.models.geometry import text_config
from labkit.models.load import Target

SIGN_ROWS, SIGN_DIMS = 64, 64  # embedding sign fingerprint: 4096 bits from rows spread over the vocabulary
FORMAT = "labkit-mtp"

FORMAT_VERSION = "1"

SHIPPED = {"gemma3-270m": "mtp-gemma3-270m.safetensors"}  # name -> file in labkit/data

SIGN_AGREEMENT = 0.75  # same model (even re-quantized) agrees on ~all signs; an unrelated one on ~half


class MTPWeightsError(ValueError):
    """Weights that cannot be used: missing or corrupt file, or trained for another target."""


def vocab_fingerprint(tokenizer: Any | None, vocab_size: int) -> str:
    """sha256 of the token strings in id order ("none" for models without a tokenizer)."""
    if tokenizer is None:
        return "none"
    pieces = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
    return hashlib.sha256("\n".join(p if p is not None else "" for p in pieces).encode()).hexdigest()[:16]


def embedding_signs(model: Any) -> str:
    """Sign bits of a fixed sample of the LM head's weights, as hex: identifies the target model, not its dtype."""
    w = model.get_output_embeddings().weight
    rows = torch.linspace(0, w.shape[0] - 1, SIGN_ROWS).long()
    bits = (w[rows, :SIGN_DIMS].float() > 0).flatten().tolist()
    return bytes(int("".join("1" if b else "0" for b in bits[i:i + 8]), 2) for i in range(0, len(bits), 8)).hex()


def sign_agreement(a: str, b: str) -> float:
    x, y = bytes.fromhex(a), bytes.fromhex(b)
    if len(x) != len(y) or not x:
        return 0.0
    same = sum(8 - bin(p ^ q).count("1") for p, q in zip(x, y, strict=True))
    return same / (8 * len(x))


def describe_target(target: Target) -> dict[str, str]:
    """What the metadata records about the target weights are trained for."""
    cfg = text_config(target.model)
    return {"target": target.name, "target_hidden_size": str(cfg.hidden_size),
            "target_vocab_size": str(target.vocab_size),
            "vocab_fingerprint": vocab_fingerprint(target.tokenizer, target.vocab_size),
            "embedding_signs": embedding_signs(target.model)}
