"""labkit's MTP head: the network (network.py), the drafter around it (drafter.py), its weight files (weights.py)."""

from labkit.drafters.mtp.drafter import MTPDrafter
from labkit.drafters.mtp.network import MTPConfig, MTPHead
from labkit.drafters.mtp.weights import MTPWeightsError

__all__ = ["MTPConfig", "MTPDrafter", "MTPHead", "MTPWeightsError"]
