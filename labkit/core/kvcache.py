"""Small helpers around transformers' DynamicCache: create one that can be rolled back, read its length, crop."""

from __future__ import annotations

from typing import Any

from transformers import DynamicCache, StaticCache


def new_cache(model: Any, kind: str = "dynamic", max_len: int | None = None) -> DynamicCache | StaticCache:
    """A cache for ``model`` that can be cropped after a rejection.

    dynamic: grows by concatenation; its sliding-window layers keep enough past to be cropped.
    static: preallocated for ``max_len`` positions (gpt-fast style: a crop only moves the length, stale entries are
    masked and later overwritten); fixed shapes and addresses, which compiled graphs and CUDA graphs need.
    """
    if kind == "static":
        if max_len is None:
            raise ValueError("cache='static' needs max_len (prompt + max_new_tokens + k)")
        cache = StaticCache(config=model.config, max_cache_len=max_len)
        if not all(getattr(layer, "is_croppable", True) for layer in cache.layers):
            window = getattr(getattr(model.config, "get_text_config", lambda: model.config)(), "sliding_window", None)
            raise ValueError(f"cache='static': prompt + max_new_tokens + k ({max_len}) exceeds the sliding window "
                             f"({window}), past which a static cache cannot roll back; use cache='dynamic'")
        return cache
    cache = DynamicCache(config=model.config)
    cache.activate_past_recording()
    return cache


def cache_len(cache: DynamicCache | StaticCache) -> int:
    """Tokens in the cache, read without a device sync where possible.

    A static cache keeps the length of its full-attention layers in a device tensor (reading it makes the host wait
    for the GPU); its sliding layers and every dynamic layer know it on the host, so read one of those first.
    """
    for layer in cache.layers:
        n = layer.get_seq_length()
        if isinstance(n, int):
            return n
    return int(cache.get_seq_length())


def crop(cache: DynamicCache, keep: int) -> None:
    """Roll back to ``keep`` tokens. Always called after a forward: it also trims sliding layers to their window."""
    n = cache_len(cache)
    if keep > n:
        raise ValueError(f"cannot crop a cache of {n} tokens to {keep}")
    cache.crop(keep - n)  # a negative count removes that many tokens (also past the sliding window)
