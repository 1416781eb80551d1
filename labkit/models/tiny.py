"""Tiny random models built from configs (tests, CI, the GPU check): same code paths, seconds to run."""

from __future__ import annotations

import copy
from typing import Any

import torch


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


def tiny_gemma4_pair(vocab_size: int = 32, seed: int = 0, dtype: torch.dtype = torch.float32,
                     centroids: int | None = None, layers: int = 4, sliding_window: int = 8,
                     global_head_dim: int = 16) -> tuple[Any, Any]:
    """A tiny random Gemma 4 target and an assistant for it (2 layers, sliding + full), built from configs.

    ``sliding_window=8`` makes short tests roll back past the window; a static cache needs one longer than the run.

    ``layers=4``: as in E2B, the last 2 target layers reuse shared K/V and every layer gets per-layer inputs;
    ``layers=2``: no sharing (cheaper, for long statistical tests). With ``centroids``, the assistant scores only
    the tokens of its top clusters, as the E2B/E4B assistants do (token order: a seeded permutation).
    ``global_head_dim``: the full-attention layers' head size (real Gemma 4: 512 against 256 for sliding layers).
    """
    from transformers import Gemma4AssistantConfig, Gemma4AssistantForCausalLM, Gemma4ForCausalLM, Gemma4TextConfig

    common = dict(vocab_size=vocab_size, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                  global_head_dim=global_head_dim, sliding_window=sliding_window, max_position_embeddings=256,
                  initializer_range=0.2, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if layers not in (2, 4):
        raise ValueError(f"layers: must be 2 or 4, got {layers!r}")
    tc = Gemma4TextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                          num_kv_shared_layers=layers - 2, layer_types=["sliding_attention", "full_attention"] * (
                              layers // 2), hidden_size_per_layer_input=8 if layers == 4 else 0,
                          vocab_size_per_layer_input=vocab_size if layers == 4 else 0, **common)
    ac = Gemma4AssistantConfig(
        text_config=Gemma4TextConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2,
                                     layer_types=["sliding_attention", "full_attention"],
                                     hidden_size_per_layer_input=0, vocab_size_per_layer_input=0, **common),
        backbone_hidden_size=32, use_ordered_embeddings=bool(centroids), num_centroids=centroids or 2,
        centroid_intermediate_top_k=max(1, (centroids or 2) // 2))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        target = Gemma4ForCausalLM(tc)
        assistant = Gemma4AssistantForCausalLM(ac)
        if centroids:
            assistant.masked_embedding.token_ordering.copy_(torch.randperm(vocab_size))
    target.generation_config.eos_token_id = None  # stop only at max_new_tokens, like labkit's tiny Gemma 3
    assistant.generation_config.num_assistant_tokens = 4  # transformers' generate needs it (hub configs set it)
    return target.to(dtype).eval(), assistant.to(dtype).eval()
