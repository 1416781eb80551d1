"""The engine protocol: run one prompt under one configuration, get the tokens and the counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from labkit.core.metrics import Counts

if TYPE_CHECKING:
    from labkit.core.records import GenerationResult


class EngineError(RuntimeError):
    """An engine that cannot run (a missing binary, a dead or unreachable server): the message is one line naming
    the fix, and the CLI prints it without a traceback."""


@dataclass
class EngineRun:
    """One request: what came out, the engine's own counters for it, and the wall time around the call."""

    engine: str
    tokens: list[int] | None  # new token ids, when the engine returns them
    text: str | None
    counts: Counts  # labkit.core.metrics counters (an engine fills what it exposes; the rest stays 0)
    seconds: float  # wall time of the call, measured by labkit (the same clock for every engine)
    raw: dict[str, Any] = field(default_factory=dict)  # the engine's own per-request figures, as it reported them
    generation: GenerationResult | None = None  # labkit's own loop: every round (other engines expose none)


@runtime_checkable
class Engine(Protocol):
    """What the bench and the notebooks need of an engine."""

    name: str

    def run(self, prompt: Any, max_new_tokens: int) -> EngineRun:
        """Generate greedily from ``prompt`` (text or token ids) for exactly ``max_new_tokens`` tokens."""
        ...

    def close(self) -> None:
        """Release what the engine holds (a server process, a connection)."""
        ...
