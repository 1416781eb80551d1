"""Device synchronisation: the engine and every timer wait for the device the same way."""

from __future__ import annotations

import torch


def sync(device: torch.device) -> None:
    """Wait for the device: timings read after it (a no-op on CPU, where work is done when the call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
