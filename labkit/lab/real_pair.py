"""The real Gemma 4 E2B target and its assistant: loaded once, and compared against plain decoding (notebook 04's GPU
cell; the device check's real section)."""

from __future__ import annotations

from typing import Any

import torch

REAL_TARGET, REAL_ASSISTANT = "google/gemma-4-E2B-it", "google/gemma-4-E2B-it-assistant"


def load_real_pair(device: str | torch.device, target_id: str = REAL_TARGET,
                   assistant_id: str = REAL_ASSISTANT) -> tuple[Any, Any]:
    """The real Gemma 4 target and its assistant (local cache first, then the hub), on ``device`` in the device's
    default dtype. Raises ModelNotAvailableError with one line (gated: what to do; offline; missing)."""
    from labkit.drafters.gemma4_assistant import Gemma4AssistantDrafter
    from labkit.models.load import load_target

    target = load_target(target_id, device=device, progress=False)
    return target, Gemma4AssistantDrafter.load(assistant_id, dtype=target.dtype, device=str(device))


def real_pair_comparison(prompts: list[str], device: str | torch.device, k: int = 4, max_new_tokens: int = 64,
                         target_id: str = REAL_TARGET, assistant_id: str = REAL_ASSISTANT) -> dict[str, Any]:
    """Notebook 04's GPU cell: plain decoding vs the Gemma 4 assistant on ``prompts`` (greedy).

    Returns {"rows": one dict per drafter (tokens/verify, acceptance, c, tok/s, speedup), "acceptance_by_position",
    "same_tokens": whether the assistant's output equals plain decoding's on every prompt, "summary": a sentence
    chosen from the measured speedup}.
    """
    from labkit.measure.sweep import compare

    target, assistant = load_real_pair(device, target_id, assistant_id)
    rows = compare(target, {"plain": None, "Gemma 4 assistant": assistant}, prompts, k=k,
                   max_new_tokens=max_new_tokens)
    plain, spec = rows[0]["results"], rows[1]["results"]
    speedup = rows[1]["speedup"]
    verdict = ("faster than" if speedup > 1.05 else "slower than" if speedup < 0.95 else "about as fast as")
    return {"rows": [{key: v for key, v in r.items() if key != "results"} for r in rows],
            "acceptance_by_position": rows[1]["acceptance_by_position"],
            "same_tokens": all(a.token_ids == b.token_ids for a, b in zip(plain, spec, strict=True)),
            "summary": f"In this run the assistant (k={k}) was {verdict} plain decoding: {speedup:.2f}x, "
                       f"{rows[1]['tokens_per_verify']:.2f} tokens per target forward."}
