"""Text measurements on token ids: how much of the output repeats what came before."""

from __future__ import annotations

from collections.abc import Sequence


def repetition(prompt_ids: Sequence[int], output_ids: Sequence[int], n: int = 4) -> float:
    """Share of the output's n-grams already seen earlier in prompt + output (0 = all new, 1 = a pure loop).

    A generated n-gram is one whose last token is generated; it counts as seen when the same n tokens start at any
    earlier position (so prompt lookup could have drafted its last token). 0.0 when the output has no n-gram.
    """
    ids = [int(t) for t in prompt_ids] + [int(t) for t in output_ids]
    first = len(ids) - len(output_ids)  # index of the first generated token
    seen: set[tuple[int, ...]] = set()
    hits = total = 0
    for start in range(len(ids) - n + 1):
        gram = tuple(ids[start: start + n])
        if start + n > first:  # the n-gram ends inside the output: a generated n-gram
            total += 1
            hits += gram in seen
        seen.add(gram)
    return hits / total if total else 0.0
