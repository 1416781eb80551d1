"""Drafters: everything that proposes tokens for the target to verify. All implement ``base.Drafter``."""

from labkit.drafters.base import DraftContext, Drafter, Proposal
from labkit.drafters.draft_model import DraftModelDrafter
from labkit.drafters.early_exit import EarlyExitDrafter
from labkit.drafters.ngram import NGramDrafter
from labkit.drafters.synthetic import SyntheticDrafter

__all__ = ["DraftContext", "Drafter", "Proposal", "DraftModelDrafter", "EarlyExitDrafter", "NGramDrafter",
           "SyntheticDrafter"]


def make_drafter(spec: str | None, target=None) -> Drafter | None:
    """A drafter from a short spec.

    none, ngram[:n], early-exit[:layers], synthetic[:alpha], draft-model:<id>, mtp[:name].
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
    raise ValueError(
        f"drafter: unknown spec {spec!r}; allowed: none, ngram[:n], early-exit[:layers], synthetic[:alpha], "
        "draft-model:<id>, mtp[:name]"
    )
