"""Where a target keeps what a drafter reads: its text config, the K/V layers per attention type."""

from __future__ import annotations

from typing import Any

import torch


def text_config(model: Any) -> Any:
    cfg = model.config
    return getattr(cfg, "text_config", None) or cfg


def kv_source_layers(model: Any) -> dict[str, int]:
    """{attention type: index of the target layer whose K/V an MTP head reads}.

    Gemma 4 names them ("store" in ``kv_sharing_modes``); otherwise the last layer of each type.
    """
    cfg = text_config(model)
    types = list(getattr(cfg, "layer_types", None) or ["full_attention"] * cfg.num_hidden_layers)
    modes = getattr(cfg, "kv_sharing_modes", None)
    if modes is not None and "store" in modes:
        return {types[i]: i for i, m in enumerate(modes) if m == "store"}
    return {t: max(i for i, x in enumerate(types) if x == t) for t in dict.fromkeys(types)}


def target_kv(cache: Any, layers: dict[str, int], window: int | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The K/V an MTP step may read: every committed position but the newest (sliding layers: the last window-1).

    The target's own query at the pending position would see window-1 cached positions plus itself; the pending
    token reaches the drafter through its input embedding instead.
    """
    out = {}
    for kind, i in layers.items():
        layer = cache.layers[i]
        k, v = layer.keys, layer.values
        if kind == "sliding_attention" and window:
            k, v = k[:, :, -(window - 1):], v[:, :, -(window - 1):]
        out[kind] = (k, v)
    return out
