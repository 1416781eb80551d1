"""transformers' Gemma 4 assistant (``Gemma4AssistantForCausalLM``) driven by labkit's draft/verify loop.

It is fed as ``SinglePositionMultiTokenCandidateGenerator`` feeds it: per step, concat(target input embedding of the
last token, last hidden state) as ``inputs_embeds``, the target's K/V of its last sliding and last full layer
("store" layers in ``kv_sharing_modes``) as ``shared_kv_states``, and a position id fixed at the last committed
token. Drafts go into no cache; step 2..k see step 1..k-1 only through the assistant's projected hidden state.

Two deliberate differences from transformers' generator, both about what "the target's state" means:
* the K/V come from labkit's target cache, which holds exactly the committed tokens except the pending one
  (transformers slices the last verify forward's K/V, which after a rejection still contain the rejected draft's
  position, and, for sliding layers, up to window+1 positions instead of the window-1 the target itself reads);
* drafts are SAMPLED from the assistant's warped distribution when sampling (transformers takes the argmax and then
  verifies as if it had sampled, which biases the output; see tests/test_gemma4_assistant.py).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from labkit.core.sampling import Sampler
from labkit.drafters.base import DraftContext, Drafter, DraftSteps, Proposal, empty_proposal
from labkit.drafters.mtp.weights import MTPWeightsError
from labkit.models.geometry import kv_source_layers, target_kv, text_config
from labkit.models.load import ModelNotAvailableError, Target, hub_error


class AssistantNotAvailableError(ModelNotAvailableError, ValueError):
    """An assistant id that is neither cached nor downloadable here."""


class Gemma4AssistantDrafter(Drafter):
    needs_hidden = True

    def __init__(self, assistant: Any, name: str | None = None):
        cls = type(assistant).__name__
        if not cls.startswith(("Gemma4Assistant", "Gemma4UnifiedAssistant")):
            raise ValueError(f"assistant: expected a Gemma4AssistantForCausalLM, got {cls}; load one with "
                             "MTPDrafter.from_assistant('google/gemma-4-E2B-it-assistant')")
        self.model = assistant.eval()
        self.vocab_size = assistant.config.get_text_config().vocab_size
        self.backbone_hidden = assistant.config.backbone_hidden_size
        self.name = name or f"gemma4-assistant({getattr(assistant.config, '_name_or_path', '') or 'model'})"
        self._bound: Any = None

    @classmethod
    def load(cls, assistant: Any, dtype: torch.dtype | None = None,
             device: str | None = None) -> Gemma4AssistantDrafter:
        """From a loaded model, a local folder or a Hugging Face id (safetensors only; cache first, then the hub)."""
        if not isinstance(assistant, str):
            return cls(assistant)
        from transformers import AutoModelForCausalLM

        from labkit.models.load import resolve

        path = resolve(assistant)
        kwargs = {"use_safetensors": True, **({"dtype": dtype} if dtype is not None else {})}
        try:
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **kwargs)
        except OSError as e:
            if os.path.isdir(path) or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
                raise _not_available(assistant, e) from None
            try:
                model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
            except OSError as e2:
                raise _not_available(assistant, e2) from None
        if device is not None:
            model = model.to(device)
        return cls(model, name=f"gemma4-assistant({assistant})")

    def begin(self, target: Target, prompt_ids: torch.Tensor) -> None:
        if self._bound is not target.model:
            self._bind(target)

    def _bind(self, target: Target) -> None:
        model = target.model
        cfg = text_config(model)
        if "store" not in (getattr(cfg, "kv_sharing_modes", None) or []):
            raise MTPWeightsError(f"assistant: target {target.name!r} is not a Gemma 4 model (no shared K/V layers); "
                                  "use a Gemma 4 target such as google/gemma-4-E2B-it, or labkit's MTPDrafter")
        if cfg.hidden_size != self.backbone_hidden:
            raise MTPWeightsError(f"assistant: {self.name} was trained for a target with hidden size "
                                  f"{self.backbone_hidden}; {target.name!r} has {cfg.hidden_size}: use the assistant "
                                  "published with that target")
        self.model.to(device=target.device, dtype=target.dtype)
        self._embed = model.get_input_embeddings()
        self._kv_layers = kv_source_layers(model)
        self._window = getattr(cfg, "sliding_window", None)
        self._bound = model

    @torch.inference_mode()
    def propose(self, ctx: DraftContext, k: int, sampler: Sampler) -> Proposal:
        if k == 0 or ctx.hidden is None:
            return empty_proposal(ctx.ids.device)
        if self._bound is not ctx.target.model:
            self._bind(ctx.target)
        kv = target_kv(ctx.target_cache, self._kv_layers, self._window, ctx.ids.numel() - 1)
        pos = torch.full((1, 1), ctx.ids.numel() - 1, device=ctx.ids.device)
        h = ctx.hidden.reshape(1, 1, -1)
        tok = ctx.ids[-1:]
        steps = DraftSteps(sampler)
        for _ in range(k):
            x = torch.cat([self._embed(tok[None]), h.to(self._embed.weight.dtype)], dim=-1)
            out = self.model(inputs_embeds=x, position_ids=pos, shared_kv_states=dict(kv), attention_mask=None)
            tok, q = sampler.pick(out.logits[0, -1])
            h = out.last_hidden_state
            if steps.add(tok, q):
                break
        return steps.proposal(reused_target_state=max(key.shape[-2] for key, _ in kv.values()))

    def __repr__(self) -> str:
        return self.name


def _not_available(name: str, e: BaseException) -> AssistantNotAvailableError:
    """The hub's reason in one line (gated: accept the terms and log in; offline: download once)."""
    return AssistantNotAvailableError(str(hub_error(name, e, what="assistant")))
