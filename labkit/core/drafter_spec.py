"""The drafter-spec grammar, parsed once and without torch: the CLI checks a spec with it before any model loads,
``labkit.drafters.make_drafter`` builds from it, and the bench plans with it.

    none | plain, ngram[:n], early-exit[:layers], synthetic[:alpha], draft-model[:<hub id or folder>],
    mtp[:name or FILE.safetensors], hybrid[:min_match[:lookup_k:model_k[:mtp]]]

A bare ``draft-model`` (or ``assistant``) names the draft model the caller holds (the bench's ``--assistant``).
Whether a shipped MTP head or a file exists is the caller's check: this module only reads the text.
"""

from __future__ import annotations

from dataclasses import dataclass

FORMS = ("none, ngram[:n], early-exit[:layers], synthetic[:alpha], draft-model:<hub id or folder>, "
         "mtp[:name or FILE.safetensors], hybrid[:min_match[:lookup_k:model_k[:mtp]]]")
KINDS = ("none", "ngram", "early-exit", "synthetic", "draft-model", "mtp", "hybrid")
_ALIASES = {"plain": "none", "": "none", "early_exit": "early-exit", "draft_model": "draft-model",
            "assistant": "draft-model"}
# kind -> (argument name, type, lowest value, example): the forms with one number
_NUMBERS = {"ngram": ("n", int, 1, "3"), "early-exit": ("layers", int, 1, "3"),
            "synthetic": ("alpha", float, 0.0, "0.8"), "hybrid": ("min_match", int, 1, "3")}


@dataclass(frozen=True)
class DrafterSpec:
    """A parsed drafter spec; a field the spec leaves out is None (the builder's default)."""

    kind: str  # one of KINDS; "none" is plain decoding
    text: str = ""  # the spec as written
    n: int | None = None  # ngram: match length (default 3)
    layers: int | None = None  # early-exit: target layers the drafter runs (default 6)
    alpha: float | None = None  # synthetic: acceptance rate (default 0.8)
    model: str | None = None  # draft-model: hub id or folder (None: the draft model the caller holds)
    head: str = ""  # mtp, hybrid: a shipped head's name or a .safetensors file ("": the shipped default)
    min_match: int | None = None  # hybrid: lookup when the last min_match tokens occurred before (default 3)
    lookup_k: int | str | None = None  # hybrid: each source's own draft length, a number or "auto"
    model_k: int | str | None = None

    @property
    def head_file(self) -> bool:
        """The MTP head comes from a file (``labkit train-mtp``'s output), not the shipped weights."""
        return self.head.endswith(".safetensors")


def parse(spec: str | None) -> DrafterSpec:
    """``spec`` as a DrafterSpec; a malformed one raises ValueError with one line naming the form expected."""
    text = spec or ""
    word, colon, arg = text.partition(":")
    kind = _ALIASES.get(word, word)
    if kind == "none" and not colon:
        return DrafterSpec("none", text)
    if kind == "hybrid" and arg.count(":") >= 1:
        return _hybrid(text, arg)
    if kind in _NUMBERS:
        field = _NUMBERS[kind][0]
        return DrafterSpec(kind, text, **{field: _number(text, kind, arg)}) if colon else DrafterSpec(kind, text)
    if kind == "draft-model":
        if colon and not arg:
            raise ValueError("drafter: 'draft-model' needs a model: draft-model:<hub id or local folder>")
        return DrafterSpec(kind, text, model=arg or None)
    if kind == "mtp":
        return DrafterSpec(kind, text, head=arg)
    raise ValueError(f"drafter: unknown spec {text!r}; expected one of: {FORMS}")


def _number(text: str, kind: str, arg: str) -> int | float:
    name, cast, low, example = _NUMBERS[kind]
    try:
        value = cast(arg)
    except ValueError:
        value = None
    if value is None or value < low or (kind == "synthetic" and value > 1):
        rule = "a number in [0, 1]" if kind == "synthetic" else f"a whole number >= {low}"
        raise ValueError(f"drafter: {text!r}: expected {kind}:<{name}> with <{name}> {rule}, e.g. {kind}:{example}")
    return value


def _hybrid(text: str, arg: str) -> DrafterSpec:
    """hybrid:min_match:lookup_k:model_k[:mtp] (min_match may be empty: the default)."""
    parts = arg.split(":")
    if len(parts) not in (3, 4):
        raise ValueError(f"drafter: {text!r}: expected hybrid[:min_match[:lookup_k:model_k[:mtp]]], e.g. "
                         "hybrid:3:auto:auto")
    min_match, *lengths = parts[:3]
    values: list[int | str] = []
    for name, v in zip(("lookup_k", "model_k"), lengths, strict=True):
        if v != "auto" and not (v.isdigit() and int(v) >= 1):
            raise ValueError(f"drafter: {text!r}: {name} must be 'auto' or a whole number >= 1, e.g. "
                             "hybrid:3:auto:auto")
        values.append(v if v == "auto" else int(v))
    return DrafterSpec("hybrid", text, min_match=_number(text, "hybrid", min_match) if min_match else None,
                       lookup_k=values[0], model_k=values[1], head=parts[3] if len(parts) == 4 else "")
