"""Device and engine checks, run by scripts/gpu_check.sh through `labkit gpu-check` and `labkit vllm-check`.

They sit beside labkit.lab, above the library: they import the library, and no library module imports them.
"""
