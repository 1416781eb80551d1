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
           "HybridDrafter", "NGramDrafter", "SyntheticDrafter", *_LAZY, "make_drafter"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_drafter(spec: str | None, target=None) -> Drafter | None:
    """A drafter from a short spec.

    none, ngram[:n], early-exit[:layers], synthetic[:alpha], draft-model:<id>, mtp[:name], hybrid[:min_match]
    (prompt lookup when the last ``min_match`` tokens, default 3, occurred before; the shipped MTP head otherwise).
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
        from labkit.drafters.mtp.drafter import MTPDrafter  # noqa: PLC0415  (arrives with the MTP drafter)

        return MTPDrafter.pretrained(arg or "gemma3-270m")
    if kind == "hybrid":
        from labkit.drafters.mtp.drafter import MTPDrafter

        return HybridDrafter(MTPDrafter.pretrained("gemma3-270m"), min_match=int(arg) if arg else 3)
    raise ValueError(
        f"drafter: unknown spec {spec!r}; allowed: none, ngram[:n], early-exit[:layers], synthetic[:alpha], "
        "draft-model:<id>, mtp[:name], hybrid[:min_match]"
    )
