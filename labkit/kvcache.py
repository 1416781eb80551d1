"""Small helpers around transformers' DynamicCache: create one that can be rolled back, read its length, crop."""

from __future__ import annotations

from typing import Any

from transformers import DynamicCache


def new_cache(model: Any) -> DynamicCache:
    """A cache for ``model`` whose sliding-window layers keep enough past to be cropped after a rejection."""
    cache = DynamicCache(config=model.config)
    cache.activate_past_recording()
    return cache


def cache_len(cache: DynamicCache) -> int:
    return int(cache.get_seq_length())


def crop(cache: DynamicCache, keep: int) -> None:
    """Roll back to ``keep`` tokens. Always called after a forward: it also trims sliding layers to their window."""
    n = cache_len(cache)
    if keep > n:
        raise ValueError(f"cannot crop a cache of {n} tokens to {keep}")
    cache.crop(keep - n)  # a negative count removes that many tokens (also past the sliding window)
