"""Self-speculation: the target's first L layers + its final norm and LM head draft for the full target."""

from __future__ import annotations

import torch

from labkit.drafters.draft_model import DraftModelDrafter
from labkit.models.load import Target
from labkit.models.tiny import shallow_copy_model


class EarlyExitDrafter(DraftModelDrafter):
    """Shares the target's weights (no extra memory for parameters); keeps its own cache for its L layers."""

    def __init__(self, layers: int = 4):
        if not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers: must be an integer >= 1, got {layers!r}")
        super().__init__(None, name=f"early-exit(L={layers})")
        self.layers = layers
        self._for = None  # the target model the shallow view was built for

    def begin(self, target: Target, prompt_ids: torch.Tensor) -> None:
        if self._for is not target.model:  # build the shallow view once per target
            shallow = shallow_copy_model(target.model, self.layers)
            self.draft = Target(shallow, target.tokenizer, self.name)
            self._for = target.model
        super().begin(target, prompt_ids)
