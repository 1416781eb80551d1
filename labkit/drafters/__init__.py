"""Drafters: everything that proposes tokens for the target to verify. All implement ``base.Drafter``."""

from typing import Any

from labkit.core.drafter_spec import DrafterSpec, parse
from labkit.core.verify_cost import VerifyCost
from labkit.drafters.argmax import ArgmaxDrafter
from labkit.drafters.base import DraftContext, Drafter, Proposal
from labkit.drafters.draft_model import DraftModelDrafter
from labkit.drafters.early_exit import EarlyExitDrafter
from labkit.drafters.hybrid import HybridDrafter
from labkit.drafters.ngram import NGramDrafter
from labkit.drafters.synthetic import SyntheticDrafter

# Heavier drafters load on first use (``from labkit.drafters import MTPDrafter`` works all the same).
_LAZY = {"MTPDrafter": "labkit.drafters.mtp.drafter", "Gemma4AssistantDrafter": "labkit.drafters.gemma4_assistant"}

__all__ = ["DraftContext", "Drafter", "Proposal", "ArgmaxDrafter", "DraftModelDrafter", "EarlyExitDrafter",
           "HybridDrafter", "NGramDrafter", "SyntheticDrafter", *_LAZY, "make_drafter"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_drafter(spec: str | DrafterSpec | None, target: Any = None, verify_cost: VerifyCost | None = None,
                 draft_model: Any = None, mtp_head: Drafter | None = None) -> Drafter | None:
    """A drafter from a spec (labkit.core.drafter_spec: its grammar, parsed without torch).

    none, ngram[:n], early-exit[:layers], synthetic[:alpha], draft-model:<id>, mtp[:name],
    hybrid[:min_match[:lookup_k:model_k[:mtp]]] (prompt lookup when the last ``min_match`` tokens, default 3,
    occurred before; the MTP head otherwise, shipped or a file; each source's own draft length: an integer or "auto",
    a cost model per source fed ``verify_cost``, e.g. ``hybrid:3:auto:auto``). ``mtp`` also takes a .safetensors
    file written by ``labkit train-mtp``. A bare ``draft-model`` drafts with ``draft_model`` (a loaded model);
    ``mtp_head`` stands in for the shipped MTP head where the spec names no file (a random head for tiny models).
    """
    p = spec if isinstance(spec, DrafterSpec) else parse(spec)
    if p.kind == "none":
        return None
    if p.kind == "ngram":
        return NGramDrafter(p.n or 3)
    if p.kind == "early-exit":
        return EarlyExitDrafter(p.layers or 6)
    if p.kind == "synthetic":
        return SyntheticDrafter(0.8 if p.alpha is None else p.alpha)
    if p.kind == "draft-model":
        return _draft_model(p, target, draft_model)
    head = mtp_head if mtp_head is not None and not p.head_file else mtp_from_spec(p.head)
    if p.kind == "mtp":
        return head
    return HybridDrafter(head, min_match=p.min_match or 3, lookup_k=p.lookup_k, model_k=p.model_k,
                         verify_cost=verify_cost)


def _draft_model(p: DrafterSpec, target: Any, draft_model: Any) -> Drafter:
    """A draft model's drafter: the one the spec names, loaded like the target, or the one given."""
    if p.model is not None:
        from labkit.models.load import load_target

        dtype = target.dtype if target is not None else None
        device = target.device if target is not None else None
        return DraftModelDrafter(load_target(p.model, dtype=dtype, device=device))
    if draft_model is None:
        raise ValueError("drafter: 'draft-model' needs a model: draft-model:<hub id or local folder>")
    if type(draft_model).__name__.startswith("Gemma4"):  # Gemma 4's assistant drafts from the target's states
        from labkit.drafters.gemma4_assistant import Gemma4AssistantDrafter

        return Gemma4AssistantDrafter(draft_model)
    return DraftModelDrafter(draft_model)


def mtp_from_spec(arg: str) -> Drafter:
    """An MTP drafter: shipped weights by target name (default gemma3-270m) or a .safetensors file train-mtp wrote."""
    from labkit.drafters.mtp.drafter import MTPDrafter

    if arg.endswith(".safetensors"):
        return MTPDrafter.load(arg)
    return MTPDrafter.pretrained(arg or "gemma3-270m")
