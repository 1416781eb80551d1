"""`labkit doctor`: what kind of machine is this, and can speculative decoding pay on it?

Measures in well under a minute: the copy rate, the verify cost T(k+1)/T(1) in bf16 and fp32 (one forward over
k+1 tokens against one over 1), which thread count is fastest now, and the CPU's features; then says, from those
numbers and labkit.measure.theory, which drafter acceptance and which k can beat plain decoding here.

Why it matters: machines of the same kind differ. On one, a 9-token bf16 verify cost 1.15x a 1-token forward; on
another (AVX2 only, no native bf16) 2 tokens cost 1.4x and 9 tokens 4.9x, and every drafter lost there.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from labkit.core.verify_cost import VerifyCost, as_verify_cost
from labkit.engines import llama_build
from labkit.measure import theory
from labkit.measure.machine import ROUNDS
from labkit.threads import CPU_FLAGS, choose_threads, cores, cpu_info, default_threads, load_average

KS = (1, 2, 3, 4, 6, 8, 12, 15)  # labkit.measure.machine.KS: the same curve every caller quotes
ALPHAS = (0.5, 0.7, 0.9)  # drafter acceptance levels the verdict gives advice for
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass
class SpeculationVerdict:
    """Whether speculative decoding can pay on this machine: what the theory says for a free drafter (c = 0) on a
    measured verify cost. (labkit.core.acceptance.Verdict is another thing: one round's verification outcome.)"""

    verify_cost: VerifyCost
    break_even_alpha: float | None  # the lowest acceptance at which some k beats plain decoding (None: none does)
    advice: list[dict[str, float]]  # per alpha: best k and the speedup it should give

    def text(self, with_curve: bool = True) -> str:
        """Plain words, from the numbers (``with_curve=False``: without the line listing the cost curve)."""
        lines = [f"verify cost against a 1-token forward: {self.verify_cost.text()}"] if with_curve else []
        a = self.break_even_alpha
        if a is None:
            lines.append("speculative decoding cannot pay here: a verify over k+1 tokens costs about as much as the "
                         "k+1 tokens it could produce, even with every draft accepted")
            return "\n".join(lines)
        k = max(self.verify_cost.ks)
        cost = f"a verify over {k + 1} tokens costs {self.verify_cost.ratios[k]:.2f}x a one-token forward"
        if a <= 0.3:
            kind = f"can pay here: {cost} (the forward mostly waits on memory, as speculation needs)"
        elif a <= 0.6:
            kind = f"can pay here only with good drafts: {cost}"
        else:
            kind = (f"rarely pays here: {cost}, almost as much as the tokens it checks (the forward is compute-bound, "
                    "e.g. without native bf16)")
        lines.append(f"speculative decoding {kind}; a free drafter (prompt lookup) needs alpha above {a:.2f}, a "
                     "drafter that costs time needs more")
        for row in self.advice:
            if row["k"] == 0:
                lines.append(f"  alpha {row['alpha']:.1f}: no k beats plain decoding")
            else:
                lines.append(f"  alpha {row['alpha']:.1f}: k = {row['k']:.0f} should give {row['speedup']:.2f}x")
        return "\n".join(lines)


def verdict(verify_cost: VerifyCost | Mapping[int, float], alphas: tuple[float, ...] = ALPHAS
            ) -> SpeculationVerdict:
    """The theory (labkit.measure.theory) with a measured verify cost, for a free drafter."""
    # the curve comes clamped and non-decreasing from VerifyCost.from_measured (the one place that decides that)
    cost = as_verify_cost(verify_cost)
    k_max, grid = max(cost.ks), [i / 100 for i in range(1, 100)]
    even = next((a for a in grid if theory.best_k(a, 0.0, k_max, cost)[0] > 0), None)
    advice = []
    for a in alphas:
        k, s = theory.best_k(a, 0.0, k_max, cost)
        advice.append({"alpha": a, "k": k, "speedup": s})
    return SpeculationVerdict(cost, even, advice)


@dataclass
class Diagnosis:
    """Everything `labkit doctor` measured, and what follows from it."""

    device: str
    cpu: str
    n_cores: int
    load: float | None
    capability: str  # torch's CPU kernel level (e.g. AVX512, AVX2)
    features: dict[str, bool]  # from /proc/cpuinfo
    copy_gb_s: float
    one_token_ms: dict[str, float]  # dtype -> ms of a one-token forward
    verify_cost: dict[str, VerifyCost]  # dtype -> T(k+1)/T(1) by draft length k
    thread_ms: dict[int, float]  # threads -> seconds of labkit.threads' probe (median of interleaved rounds)
    fastest_threads: int  # what labkit.threads.choose_threads picked (the CLI, bench and notebooks use the same)
    policy_threads: int  # what labkit's thread policy (load average only, no probe) would pick now
    dtype: str  # what labkit uses by default
    verdict: SpeculationVerdict
    references: dict[str, dict[str, Any]] = field(default_factory=dict)  # dtype -> labkit.measure.machine reference
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    llama_server: str = ""  # which llama-server variant is cached and whether it served (labkit.engines.llama_build)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(target: Any = None, ks: tuple[int, ...] = KS, repeats: int = ROUNDS, device: str | None = None,
             copy_megabytes: int = 256, refresh: bool = True) -> Diagnosis:
    """Measure this machine (the embedded target unless one is given; its weights are converted between dtypes).

    The verify-cost curves are labkit.measure.machine's reference, measured afresh (``repeats`` interleaved rounds)
    and stored as this session's reference, so notebooks and the bench that follow quote the same numbers;
    ``refresh=False`` reuses the session's reference where there is one (a notebook that measured it already)."""
    from labkit.measure import machine
    from labkit.models.load import as_target, default_device, load_target

    t0 = time.perf_counter()
    dev = torch.device(device) if device else default_device()
    if target is None:
        target = load_target("gemma3-270m", device=dev, progress=False)
    target = as_target(target)
    model = target.model
    name, features = cpu_info()
    load = load_average()
    policy = default_threads()  # the load average's answer, for comparison: it lags
    best, thread_s = choose_threads(refresh=refresh)
    torch.set_num_threads(best)
    ms, curves, refs = {}, {}, {}
    for dname, dt in DTYPES.items():  # bf16 first: labkit's default, and the model arrives in it
        model.to(dt)
        ref = machine.reference(target, ks, rounds=repeats, refresh=refresh, copy_megabytes=copy_megabytes)
        ms[dname], curves[dname], refs[dname] = ref.one_token_ms, ref.verify_cost, ref
    model.to(torch.bfloat16)
    d = Diagnosis(device=dev.type, cpu=name, n_cores=cores(), load=load,
                  capability=torch.backends.cpu.get_cpu_capability(), features=features,
                  copy_gb_s=refs["bf16"].copy_gb_s, one_token_ms=ms, verify_cost=curves, thread_ms=thread_s,
                  fastest_threads=best, policy_threads=policy, dtype="bf16", verdict=verdict(curves["bf16"]),
                  references={k: r.as_dict() for k, r in refs.items()})
    d.notes = notes(d)
    d.llama_server = llama_build.describe()
    d.seconds = time.perf_counter() - t0
    return d


def notes(d: Diagnosis) -> list[str]:
    """Plain-word remarks on dtype, threads, CPU features and load, chosen from the measurements."""
    out = []
    bf16, fp32 = d.one_token_ms["bf16"], d.one_token_ms["fp32"]
    if d.device == "cpu" and not (d.features.get("avx512_bf16") or d.features.get("amx_bf16")):
        out.append("this CPU has no native bf16 arithmetic (no avx512_bf16 / amx_bf16): bf16 matrix products are "
                   "emulated, so verifying more tokens costs more")
    if fp32 < 0.9 * bf16:
        out.append(f"fp32 was faster than bf16 here ({fp32:.1f} vs {bf16:.1f} ms per token): pass --dtype fp32")
    else:
        out.append(f"labkit uses bf16 (its default): {bf16:.1f} ms per one-token forward here, fp32 {fp32:.1f} ms")
    out.append(f"labkit uses {d.fastest_threads} thread(s) now, the fastest count its probe measured (the CLI, the "
               "bench and the notebooks run the same probe)"
               + ("" if d.fastest_threads == d.policy_threads else
                  f"; the load average alone would have said {d.policy_threads}, as it lags a minute behind"))
    if d.load is not None and d.load > d.n_cores:
        out.append(f"the machine is busy (load average {d.load:.1f} on {d.n_cores} cores): these timings include "
                   "waiting for a core; run `labkit doctor` again when it is idle")
    return out


def render(d: Diagnosis) -> str:
    """The doctor's report as text."""
    feats = ", ".join(f for f, on in d.features.items() if on) or "none of " + ", ".join(CPU_FLAGS)
    threads = ", ".join(f"{n}: {1e3 * secs:.1f} ms" for n, secs in sorted(d.thread_ms.items()))
    load = f"{d.load:.1f}" if d.load is not None else "unknown"
    lines = [
        f"machine: {d.cpu} ({d.device}), {d.n_cores} cores, load average {load}",
        f"cpu features: {feats}; torch kernels: {d.capability}",
        f"copy rate: {d.copy_gb_s:.1f} GB/s",
        f"one-token forward: bf16 {d.one_token_ms['bf16']:.1f} ms, fp32 {d.one_token_ms['fp32']:.1f} ms "
        f"(thread probe {threads})",
        *_reference_lines(d, "fp32"),
        *_reference_lines(d, "bf16"),
        "bf16 " + d.verdict.text(with_curve=False),
        *d.notes,
        d.llama_server,
        f"(measured in {d.seconds:.0f} s)",
    ]
    return "\n".join(lines)


def _reference_lines(d: Diagnosis, dtype: str) -> list[str]:
    """The dtype's verify-cost curve with its spread, from the machine reference the doctor measured."""
    ref, curve = d.references.get(dtype), d.verify_cost[dtype].text()
    if not ref:
        return [f"{dtype} verify cost against a 1-token forward: {curve}"]
    return [f"{dtype} verify cost T(n)/T(1) ({ref['rounds']} interleaved rounds, median ± half the interquartile "
            f"range; non-decreasing): {curve}", *ref.get("notes", [])]
