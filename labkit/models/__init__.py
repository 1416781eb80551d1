"""Targets: loading (hub, local, embedded), the embedded model's preparation, tiny models, geometry."""

from typing import Any

# Names load on first use: `labkit.models.embedded` (its EMBEDDED table) must not pull in torch via this file.
_EXPORTS = {"ModelNotAvailableError": "labkit.models.load", "Target": "labkit.models.load",
            "as_target": "labkit.models.load", "default_device": "labkit.models.load",
            "default_dtype": "labkit.models.load", "load_target": "labkit.models.load",
            "tiny_model": "labkit.models.tiny", "tiny_pair": "labkit.models.tiny"}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'labkit.models' has no attribute {name!r}")
