"""What one device check run is asked to do (``labkit gpu-check``'s options), with the defaults that depend on the
device and size settled."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GpuCheckOptions:
    device: str = "cuda"
    size: str | None = None  # "e2b" or "tiny"; default: e2b on cuda, tiny elsewhere
    dtype: str | None = None  # bf16 / fp16 / fp32; default: the device's (e2b), fp32 (tiny)
    ks: list[int] = field(default_factory=lambda: [0, 4, 8])
    max_new_tokens: int | None = None  # default 64 (e2b), 48 (tiny)
    repeats: int = 2
    chi2_draws: int | None = None  # per χ² check; default 1500 (cuda), 600 elsewhere
    compile_mode: str | None = None  # torch.compile mode (default: reduce-overhead on cuda)
    no_compile: bool = False
    no_real: bool = False  # never load the real Gemma 4 E2B pair
    budget_s: float = 270.0  # sections that would not fit are skipped
    out: str | None = None  # write gpu_check.json and the bench JSON / CSV / HTML here

    def settled(self) -> GpuCheckOptions:
        """The defaults that depend on the device and the size, filled in."""
        self.size = self.size or ("e2b" if self.device.startswith("cuda") else "tiny")
        self.max_new_tokens = self.max_new_tokens or (64 if self.size == "e2b" else 48)
        self.chi2_draws = self.chi2_draws or (1500 if self.device.startswith("cuda") else 600)
        return self
