"""Drafters: everything that proposes tokens for the target to verify. All implement ``base.Drafter``."""

from typing import Any

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
           "HybridDrafter", "NGramDrafter", "SyntheticDrafter", *_LAZY, "hybrid_from_spec", "make_drafter"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_drafter(spec: str | None, target=None, verify_cost: dict[int, float] | None = None) -> Drafter | None:
    """A drafter from a short spec.

    none, ngram[:n], early-exit[:layers], synthetic[:alpha], draft-model:<id>, mtp[:name],
    hybrid[:min_match[:lookup_k:model_k[:mtp]]] (prompt lookup when the last ``min_match`` tokens, default 3,
    occurred before; the MTP head otherwise, shipped or a file; each source's own draft length: an integer or "auto",
    a cost model per source fed ``verify_cost``, e.g. ``hybrid:3:auto:auto``). ``mtp`` also takes a .safetensors
    file written by ``labkit train-mtp``.
    """
    if spec is None or spec in ("", "none", "plain"):
        return None
    kind, _, arg = spec.partition(":")
    if kind == "ngram":
        return NGramDrafter(int(arg) if arg else 3)
    if kind in ("early-exit", "early_exit"):
        return EarlyExitDrafter(int(arg) if arg else 6)
    if kind == "synthetic":
        return SyntheticDrafter(float(arg) if arg else 0.8)
    if kind in ("draft-model", "draft_model"):
        if not arg:
            raise ValueError("drafter: 'draft-model' needs a model, e.g. draft-model:google/gemma-3-270m")
        from labkit.models.load import load_target

        dtype = target.dtype if target is not None else None
        device = target.device if target is not None else None
        return DraftModelDrafter(load_target(arg, dtype=dtype, device=device))
    if kind == "mtp":
        return mtp_from_spec(arg)
    if kind == "hybrid":
        parts = arg.split(":") if arg else []
        if len(parts) > 4:
            raise ValueError(f"drafter: 'hybrid:{arg}': expected hybrid[:min_match[:lookup_k:model_k[:mtp]]]")
        head = mtp_from_spec(parts[3] if len(parts) == 4 else "")
        return hybrid_from_spec(head, ":".join(parts[:3]), verify_cost)
    raise ValueError(
        f"drafter: unknown spec {spec!r}; allowed: none, ngram[:n], early-exit[:layers], synthetic[:alpha], "
        "draft-model:<id>, mtp[:name], hybrid[:min_match[:lookup_k:model_k]]"
    )


def mtp_from_spec(arg: str) -> Drafter:
    """An MTP drafter: shipped weights by target name (default gemma3-270m) or a .safetensors file train-mtp wrote."""
    from labkit.drafters.mtp.drafter import MTPDrafter

    if arg.endswith(".safetensors"):
        return MTPDrafter.load(arg)
    return MTPDrafter.pretrained(arg or "gemma3-270m")


def hybrid_from_spec(fallback: Drafter, arg: str, verify_cost: dict[int, float] | None = None) -> HybridDrafter:
    """The hybrid of a ``hybrid:`` spec's argument ("3", "3:auto:2", ...) around ``fallback``."""
    parts = arg.split(":") if arg else []
    if len(parts) not in (0, 1, 3):
        raise ValueError(f"drafter: 'hybrid:{arg}': expected hybrid[:min_match[:lookup_k:model_k]], e.g. "
                         "hybrid:3:auto:auto")

    def length(x: str) -> int | str:
        return x if x == "auto" else int(x)

    lk, mk = (length(parts[1]), length(parts[2])) if len(parts) == 3 else (None, None)
    return HybridDrafter(fallback, min_match=int(parts[0]) if parts and parts[0] else 3, lookup_k=lk, model_k=mk,
                         verify_cost=verify_cost)
