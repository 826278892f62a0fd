"""Running a case: build its Program, step it, compare every output with the numpy reference.

A case is built by a function returning `CaseSpec`: the Program, then a list of steps, each
with inputs and the expected outputs (None to skip one) and the tolerance stated per case.
Tolerance "exact" means bit-identical (copies, integer ops).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..graph import Graph


@dataclass
class Step:
    inputs: list
    expected: list  # one per program output; None = not checked
    # extra checks after the step: value id -> expected array (e.g. a KV cache)
    state: dict = field(default_factory=dict)


@dataclass
class CaseSpec:
    program: object
    steps: list
    atol: float | str = "exact"
    rtol: float = 0.0


@dataclass
class ErrorSpec:
    """A case that must fail: at build (`steps` empty) or at its last step."""
    program: object
    error: type
    match: str
    steps: list = field(default_factory=list)  # inputs lists; all but the last must succeed


def compare(name: str, got, want, atol, rtol) -> float:
    """Max abs error; raises AssertionError with details when outside tolerance."""
    if isinstance(want, (int, np.integer)) and not isinstance(want, bool):
        if int(got) != int(want):
            raise AssertionError(f"{name}: got {got}, expected {want}")
        return 0.0
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {list(got.shape)}, expected {list(want.shape)}")
    if atol == "exact":
        if got.dtype != want.dtype and want.dtype != np.int64:
            want = want.astype(got.dtype)
        if not np.array_equal(got, want.astype(got.dtype)):
            bad = int(np.sum(got != want.astype(got.dtype)))
            raise AssertionError(f"{name}: {bad} of {got.size} elements differ (exact comparison)")
        return 0.0
    if got.size == 0:
        return 0.0
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    limit = atol + rtol * np.abs(want.astype(np.float64))
    if not np.all(err <= limit):
        i = int(np.argmax(err - limit))
        raise AssertionError(
            f"{name}: max abs error {err.max():.3g} exceeds atol {atol} + rtol {rtol} "
            f"(at flat index {i}: got {got.reshape(-1)[i]}, expected {want.reshape(-1)[i]})")
    return float(err.max())


# Graphs whose prompts' linears run on the matrix units (ops.quant_kernels.uses_mma) round x and
# the weights to f16 there (sums stay f32): their float outputs are checked with at least these
# tolerances (the H200 matched every quant and fusion case within 0.04 abs at |values| <= 66).
MMA_ATOL, MMA_RTOL = 3e-2, 4e-3


def tolerance(g, spec: CaseSpec) -> tuple:
    if spec.atol == "exact" or not any(e.endswith("_mma") for e in g.pipelines.entries()):
        return spec.atol, spec.rtol
    return max(spec.atol, MMA_ATOL), max(spec.rtol, MMA_RTOL)


async def run_case(backend, spec: CaseSpec, name: str = "case") -> dict:
    """Build, run every step, check outputs and state; returns {'max_err', 'steps', 'stats'}."""
    g = await Graph.build(spec.program, backend)
    worst = 0.0
    atol, rtol = tolerance(g, spec)
    try:
        for si, step in enumerate(spec.steps):
            outs = await g.step(step.inputs)
            for oi, (got, want) in enumerate(zip(outs, step.expected)):
                if want is not None:
                    worst = max(worst, compare(f"{name} step {si} output {oi}", got, want, atol, rtol))
            for vid, want in step.state.items():
                got = await g.read(vid)
                worst = max(worst, compare(f"{name} step {si} value {vid}", got, want, atol, rtol))
        stats = g.memory_stats()
    finally:
        g.destroy()
    leaked = backend.memory_stats()
    return {"max_err": worst, "steps": len(spec.steps), "stats": stats, "after_destroy": leaked}


async def run_error_case(backend, spec: ErrorSpec, name: str = "case") -> str:
    """The case must raise `spec.error` matching `spec.match`, allocate nothing when it fails
    at build, and leave the graph usable when it fails at a step. Returns the message."""
    before = backend.memory_stats()
    if not spec.steps:
        try:
            g = await Graph.build(spec.program, backend)
        except spec.error as e:
            msg = str(e)
            if spec.match not in msg:
                raise AssertionError(f"{name}: error {msg!r} does not mention {spec.match!r}") from e
            after = backend.memory_stats()
            if after != before:
                raise AssertionError(f"{name}: a failed build left GPU objects behind: {before} -> {after}")
            return msg
        g.destroy()
        raise AssertionError(f"{name}: build succeeded, expected {spec.error.__name__}")
    g = await Graph.build(spec.program, backend)
    try:
        for inputs in spec.steps[:-1]:
            await g.step(inputs)
        try:
            await g.step(spec.steps[-1])
        except spec.error as e:
            msg = str(e)
            if spec.match not in msg:
                raise AssertionError(f"{name}: error {msg!r} does not mention {spec.match!r}") from e
        else:
            raise AssertionError(f"{name}: step succeeded, expected {spec.error.__name__}")
        # The graph must still work: replay the first (valid) step.
        await g.step(spec.steps[0])
        return msg
    finally:
        g.destroy()
