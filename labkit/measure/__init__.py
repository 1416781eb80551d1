"""Measurement: the bench, its report, theory, timing, sweeps, prompts, the GPU check."""
