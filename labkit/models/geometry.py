"""Where a target keeps what a drafter reads: its text config, the K/V layers per attention type."""

from __future__ import annotations

from typing import Any

import torch


def text_config(model: Any) -> Any:
    cfg = model.config
    return getattr(cfg, "text_config", None) or cfg


def layer_config(model: Any, i: int) -> Any:
    """Layer ``i``'s config: Gemma 4's full-attention layers have their own head_dim (global_head_dim) and K/V heads,
    and its global config refuses to answer for them (AmbiguousGlobalPerLayerAttributeError)."""
    cfg = text_config(model)
    return cfg.per_layer_config[i] if getattr(cfg, "is_heterogeneous", False) else cfg


def attention_dims(model: Any, i: int) -> tuple[int, int]:
    """(head_dim, key/value heads) of layer ``i``."""
    c = layer_config(model, i)
    return int(getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads), int(c.num_key_value_heads)


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


def target_kv(cache: Any, layers: dict[str, int], window: int | None,
              length: int | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The K/V an MTP step may read: every committed position but the newest (sliding layers: the last window-1).

    The target's own query at the pending position would see window-1 cached positions plus itself; the pending
    token reaches the drafter through its input embedding instead. ``length``: the cache's length (committed tokens
    minus one), needed for a static cache, whose preallocated tensors hold stale or empty positions past it (a
    static cache never exceeds the sliding window, so its sliding layers hold positions 0.. in order).
    """
    out = {}
    for kind, i in layers.items():
        layer = cache.layers[i]
        k, v = layer.keys, layer.values
        if getattr(layer, "is_compileable", False):  # static: preallocated to max_cache_len
            if length is None:
                length = int(layer.get_seq_length())
            k, v = k[:, :, :length], v[:, :, :length]
        if kind == "sliding_attention" and window:
            k, v = k[:, :, -(window - 1):], v[:, :, -(window - 1):]
        out[kind] = (k, v)
    return out
