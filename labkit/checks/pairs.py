"""The models the device check runs on: random Gemma 4 pairs (tiny, or at E2B's real dimensions) and every drafter
labkit has on tiny fp32 models."""

from __future__ import annotations

from typing import Any

import torch


def e2b_like_pair(device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """Random Gemma 4 target and assistant at E2B's real dimensions (35 layers, hidden 1536, head_dim 256 and
    global_head_dim 512, 20 KV-shared layers, per-layer embeddings, 262k vocabulary; a 4-layer assistant reading the
    target's K/V through a 2048-centroid head), built on the device."""
    from transformers import Gemma4AssistantConfig, Gemma4AssistantForCausalLM, Gemma4ForCausalLM, Gemma4TextConfig

    shared = dict(vocab_size=262144, num_key_value_heads=1, head_dim=256, global_head_dim=512, sliding_window=512,
                  max_position_embeddings=32768, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    tc = Gemma4TextConfig(hidden_size=1536, intermediate_size=6144, num_hidden_layers=35, num_attention_heads=8,
                          layer_types=(["sliding_attention"] * 4 + ["full_attention"]) * 7, num_kv_shared_layers=20,
                          hidden_size_per_layer_input=256, vocab_size_per_layer_input=262144,
                          use_double_wide_mlp=True, final_logit_softcapping=30.0, **shared)
    ac = Gemma4AssistantConfig(
        text_config=Gemma4TextConfig(hidden_size=256, intermediate_size=2048, num_hidden_layers=4,
                                     num_attention_heads=4, layer_types=["sliding_attention"] * 3 + ["full_attention"],
                                     hidden_size_per_layer_input=0, vocab_size_per_layer_input=0, **shared),
        backbone_hidden_size=1536, use_ordered_embeddings=True)
    torch.manual_seed(0)
    with torch.device(device):
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # build in the target dtype: no fp32 copy of ~5B parameters
        try:
            target, assistant = Gemma4ForCausalLM(tc), Gemma4AssistantForCausalLM(ac)
            # a trained assistant ships its token order; a random one needs a permutation, not the zero init
            assistant.masked_embedding.token_ordering.copy_(torch.randperm(tc.vocab_size))
        finally:
            torch.set_default_dtype(old)
    target.generation_config.eos_token_id = None
    assistant.generation_config.num_assistant_tokens = 4
    return target.eval(), assistant.eval()


def tiny_pair_on(device: torch.device, dtype: torch.dtype, sliding_window: int = 8) -> tuple[Any, Any]:
    from labkit.models.tiny import tiny_gemma4_pair

    t, a = tiny_gemma4_pair(vocab_size=64, seed=0, sliding_window=sliding_window)
    return t.to(device=device, dtype=dtype), a.to(device=device, dtype=dtype)


def tiny_drafters(device: torch.device) -> dict[str, tuple[Any, Any, int]]:
    """{name: (target, drafter, k)} on tiny fp32 models: every drafter labkit has, on a window long enough for the
    static cache (64); the Gemma 4 pair has unequal head sizes (16 sliding, 32 full), as the real one has.
    One k for all: the static cache's length (prompt + new tokens + k) is a compiled graph's shape, shared then."""
    from labkit.drafters import DraftModelDrafter, EarlyExitDrafter, NGramDrafter, SyntheticDrafter
    from labkit.drafters.gemma4_assistant import Gemma4AssistantDrafter
    from labkit.drafters.mtp.drafter import MTPDrafter
    from labkit.models.tiny import tiny_gemma4_pair, tiny_model

    t3 = tiny_model(64, layers=3, hidden=48, seed=1, sliding_window=64).to(device)
    d3 = tiny_model(64, layers=1, hidden=32, seed=2, sliding_window=64).to(device)
    t4, a4 = (m.to(device) for m in tiny_gemma4_pair(64, seed=0, sliding_window=64, global_head_dim=32))
    return {"ngram": (t3, NGramDrafter(3), 3), "draft-model": (t3, DraftModelDrafter(d3), 3),
            "early-exit": (t3, EarlyExitDrafter(1), 3), "synthetic": (t3, SyntheticDrafter(0.7), 3),
            "mtp (gemma3)": (t3, MTPDrafter.random_init(t3, seed=1), 3),
            "mtp (gemma4)": (t4, MTPDrafter.random_init(t4, seed=1), 3),
            "gemma4 assistant": (t4, Gemma4AssistantDrafter(a4), 3)}
