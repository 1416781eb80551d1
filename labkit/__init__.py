"""labkit: see and measure speculative (draft/verify, MTP) decoding of real language models."""

from typing import Any

__version__ = "0.1.0"

# Names load on first use, so `labkit --help` and argument errors answer before torch/transformers finish importing.
_EXPORTS = {
    "SpeculativeDecoder": "labkit.core.engine", "plain_decoder": "labkit.core.engine",
    "GenerationResult": "labkit.core.records", "KVTrace": "labkit.core.records", "RoundRecord": "labkit.core.records",
    "Stats": "labkit.core.records", "MAX_K": "labkit.core.sampling", "SamplingConfig": "labkit.core.sampling",
    "Target": "labkit.models.load", "load_target": "labkit.models.load", "tiny_model": "labkit.models.tiny",
    "tiny_pair": "labkit.models.tiny",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
