"""Targets: loading (hub, local, embedded), the embedded model's preparation, tiny models, geometry."""

from labkit.models.load import ModelNotAvailableError, Target, as_target, default_device, default_dtype, load_target
from labkit.models.tiny import tiny_model, tiny_pair

__all__ = ["ModelNotAvailableError", "Target", "as_target", "default_device", "default_dtype", "load_target",
           "tiny_model", "tiny_pair"]
