"""The two in-process engines behind the engine protocol: labkit's own loop and transformers' ``generate``.

Both run on a ``labkit.models.load.Target`` in this process. labkit's returns every round (``EngineRun.generation``,
a ``GenerationResult``) and its counts; transformers' exposes no rounds, so its counts hold tokens and time only.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import torch

from labkit.core import metrics
from labkit.engines.base import EngineRun

HF_MODES = ("greedy", "prompt-lookup", "early-exit", "assistant")


def _ids(target: Any, prompt: Any) -> torch.Tensor:
    if isinstance(prompt, str):
        return torch.tensor(target.tokenizer(prompt)["input_ids"], device=target.device)
    return torch.as_tensor(prompt, device=target.device).reshape(-1)


class LabkitEngine:
    """``SpeculativeDecoder(target, drafter, k, **decoder)`` as an engine; ``gen`` (temperature, top_k, top_p,
    seed, eos_token_id) applies to every run. EOS is ignored unless ``gen`` names one ("default": the target's), so
    a run emits exactly ``max_new_tokens``, as the engine protocol asks."""

    def __init__(self, target: Any, drafter: Any = None, k: Any = 0, name: str | None = None,
                 gen: dict[str, Any] | None = None, **decoder: Any):
        from labkit.core.engine import SpeculativeDecoder

        self.decoder = SpeculativeDecoder(target, drafter, k=k if drafter is not None else 0, **decoder)
        self.gen = {"eos_token_id": None, **(gen or {})}
        self.name = name or f"labkit {getattr(drafter, 'name', 'plain')}" + (f" k={k}" if drafter else "")

    def run(self, prompt: Any, max_new_tokens: int) -> EngineRun:
        t0 = time.perf_counter()
        res = self.decoder.generate(prompt, max_new_tokens=max_new_tokens, **self.gen)
        seconds = time.perf_counter() - t0
        counts = dataclasses.replace(metrics.counts(res), wall_seconds=seconds)
        return EngineRun(self.name, res.token_ids, res.text, counts, seconds, generation=res)

    def close(self) -> None:
        """Nothing to release: the target belongs to the caller."""


class TransformersEngine:
    """transformers' greedy ``generate`` as an engine: plain, or its prompt lookup / early exit / assisted
    decoding drafting a fixed ``k`` (``assistant``: the draft model for mode "assistant"; ``early_exit_layers`` for
    "early-exit")."""

    def __init__(self, target: Any, mode: str = "greedy", k: int = 0, assistant: Any = None,
                 early_exit_layers: int = 6, max_new_tokens: int = 64):
        if mode not in HF_MODES:
            raise ValueError(f"mode: unknown {mode!r}; choose from {', '.join(HF_MODES)}")
        self.target, self.name = target, f"transformers {mode}" + (f" k={k}" if k else "")
        gc = copy.deepcopy(target.model.generation_config)
        gc.update(do_sample=False, max_new_tokens=max_new_tokens, min_new_tokens=None, eos_token_id=None,
                  pad_token_id=gc.pad_token_id if gc.pad_token_id is not None else 0, temperature=None, top_k=None,
                  top_p=None)
        self.extra: dict[str, Any] = {}
        if mode == "prompt-lookup":
            gc.prompt_lookup_num_tokens = k
        elif mode in ("early-exit", "assistant"):
            gc.num_assistant_tokens, gc.num_assistant_tokens_schedule = k, "constant"  # fixed k, like labkit's
            if mode == "early-exit":
                gc.assistant_early_exit = early_exit_layers
            else:
                if assistant is None:
                    raise ValueError("mode 'assistant' needs a draft model (assistant=...)")
                self.extra["assistant_model"] = assistant
        self.config = gc

    def run(self, prompt: Any, max_new_tokens: int) -> EngineRun:
        x = _ids(self.target, prompt)[None]
        self.config.max_new_tokens = max_new_tokens  # on the config: generate warns when both are mixed
        t0 = time.perf_counter()
        out = self.target.model.generate(x, attention_mask=torch.ones_like(x), generation_config=self.config,
                                         **self.extra)
        seconds = time.perf_counter() - t0
        tokens = out[0, x.shape[1]:].tolist()
        text = self.target.tokenizer.decode(tokens) if self.target.tokenizer is not None else None
        return EngineRun(self.name, tokens, text, metrics.Counts(new_tokens=len(tokens), wall_seconds=seconds, runs=1),
                         seconds)

    def close(self) -> None:
        """Nothing to release: the target belongs to the caller."""
