"""The exported .pte fixtures (tests/fixtures/pte/) run through PteSession, step by step.

Shared by the CPython test (native backend) and the browser test (inside Pyodide): the host
reads the files (`load_fixture_files`) and hands plain data over — the .pte bytes and the
npz contents as {key: ndarray} — so the page never needs the files themselves.

Tolerances, per fixture (`TOLERANCES`):
- "exact": bit-identical, for copies and integer ops (select, update_cache + a no-op add/mul);
- "rel":  max |got - want| <= rtol * max |want| for each output (the error relative to the
  output's scale, so values near zero do not blow it up), rtol = 1e-4 for float math.
The expected values are the eager PyTorch module's outputs recorded at export time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REL = 1e-4


@dataclass(frozen=True)
class Tol:
    kind: str            # "exact" or "rel"
    rtol: float = 0.0
    why: str = ""

    def describe(self) -> str:
        return "exact" if self.kind == "exact" else f"relative {self.rtol:g} of max |expected|"


def _rel(why: str) -> Tol:
    return Tol("rel", REL, why)


EXACT_COPY = Tol("exact", 0.0, "copies only")
TOLERANCES = {
    "add_mul_sigmoid": _rel("mul, add, sigmoid (exp)"),
    "embedding_q4gsw": _rel("4-bit dequantization: (q - 8) * scale"),
    "linear_q4gsw_dynamic": _rel("4-bit linear, dot products of 64"),
    "linear_q4gsw_static": _rel("4-bit linear, dot products of 64"),
    "linear_qcs4w": _rel("4-bit per-channel linear, dot products of 32"),
    "rms_norm_dynamic": _rel("mean of squares, rsqrt"),
    "rms_norm_pattern": _rel("mean of squares, rsqrt"),
    "rms_norm_static": _rel("mean of squares, rsqrt"),
    "rope_gqa_dynamic": _rel("rotation: a*cos - b*sin (fma may contract)"),
    "rope_gqa_static": _rel("rotation: a*cos - b*sin (fma may contract)"),
    "sdpa_kv_cache": _rel("softmax attention over the cache"),
    "select_negative": Tol("exact", 0.0, "select_copy: a copy"),
    "update_cache_pos3": Tol("exact", 0.0, "cache write (a copy) then + 0.0"),
    "update_cache_input_pos5": Tol("exact", 0.0, "cache write (a copy) then * 1.0"),
    "tiny_llama_q4": _rel("whole llama: logits"),
    "tiny_llama_q4_emb4": _rel("whole llama: logits"),
}
# Fixtures whose output is next-token logits: the greedy id (argmax) must match too.
GREEDY = {"tiny_llama_q4", "tiny_llama_q4_emb4"}
# Fixtures the reader must reject, with (error class name, text the message contains).
ERROR_FIXTURES = {
    "error_no_delegate": ("PteError", "no delegate call in the execution plan"),
}
FIXTURES = sorted(TOLERANCES)


def load_fixture_files(directory, name: str):
    """(pte bytes, inputs {key: array}, expected {key: array}) of fixture `name` (host side)."""
    import os

    base = os.path.join(str(directory), name)
    with open(base + ".pte", "rb") as f:
        data = f.read()
    arrays = []
    for suffix in (".inputs.npz", ".expected.npz"):
        with np.load(base + suffix) as z:
            arrays.append({k: z[k].copy() for k in z.files})
    return data, arrays[0], arrays[1]


def _n_steps(inputs: dict) -> int:
    return len({k.split(".")[0] for k in inputs})


def _check(what: str, got, want, tol: Tol) -> float:
    """The error measure of `tol` (0.0 for exact); AssertionError when outside tolerance."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {list(got.shape)}, expected {list(want.shape)}")
    if got.dtype != want.dtype:
        raise AssertionError(f"{what}: dtype {got.dtype}, expected {want.dtype}")
    if tol.kind == "exact":
        if not np.array_equal(got, want):
            bad = int(np.sum(got != want))
            raise AssertionError(f"{what}: {bad} of {got.size} elements differ (exact comparison)")
        return 0.0
    if got.size == 0:
        return 0.0
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    scale = max(float(np.abs(want.astype(np.float64)).max()), 1e-30)
    rel = float(err.max()) / scale
    if not np.isfinite(rel) or rel > tol.rtol:
        i = int(np.argmax(err))
        raise AssertionError(f"{what}: error {err.max():.3g} is {rel:.3g} of max |expected| "
                             f"{scale:.3g}, tolerance {tol.rtol:g} (flat index {i}: got "
                             f"{got.reshape(-1)[i]}, expected {want.reshape(-1)[i]})")
    return rel


async def run_fixture(backend, name: str, pte_bytes, inputs: dict, expected: dict) -> dict:
    """Run fixture `name` step by step on ONE session (KV caches carry over) and check every
    output, every mutated argument's new value (returned and written back into the argument
    array) and, for llamas, the greedy id. Frees everything; checks nothing leaked.

    Returns {"name", "tolerance", "steps", "max_err" (the tolerance's measure), "max_abs_err",
    "greedy_ids", "min_top2_gap"}."""
    from ..pte_runner import PteSession

    tol = TOLERANCES[name]
    before = backend.memory_stats()
    session = await PteSession.create(pte_bytes, backend)
    worst = worst_abs = 0.0
    ids, gaps = [], []
    try:
        n_args = len(session.module.forward_inputs)
        for t in range(_n_steps(inputs)):
            args = [np.array(inputs[f"step{t}.arg{i}"], copy=True) for i in range(n_args)]
            outs = await session.forward(*args)
            n_want = len([k for k in expected if k.startswith(f"step{t}.out")])
            if len(outs) != n_want:
                raise AssertionError(f"{name} step {t}: {len(outs)} outputs, expected {n_want}")
            for j, got in enumerate(outs):
                want = expected[f"step{t}.out{j}"]
                worst = max(worst, _check(f"{name} step {t} out {j}", got, want, tol))
                worst_abs = max(worst_abs, float(np.abs(np.asarray(got, np.float64) - want).max()))
                if name in GREEDY:
                    g_id, w_id = int(np.argmax(got[-1])), int(np.argmax(want[-1]))
                    top2 = np.sort(want[-1].astype(np.float64))[-2:]
                    gaps.append(float(top2[1] - top2[0]))
                    if g_id != w_id:
                        raise AssertionError(f"{name} step {t}: greedy id {g_id}, expected {w_id}")
                    ids.append(g_id)
            after = {k: v for k, v in expected.items() if k.startswith(f"step{t}.arg")}
            if sorted(session.mutated) != sorted(int(k.split(".")[1][3:]) for k in after):
                raise AssertionError(f"{name} step {t}: mutated args {sorted(session.mutated)}, "
                                     f"expected {sorted(after)}")
            for key, want in after.items():
                i = int(key.split(".")[1][3:])
                worst = max(worst, _check(f"{name} step {t} arg {i} new value",
                                          session.mutated[i], want, tol))
                _check(f"{name} step {t} arg {i} written back", args[i], want, tol)
    finally:
        session.destroy()
    leaked = backend.memory_stats()
    if leaked != before:
        raise AssertionError(f"{name}: GPU objects left after destroy: {before} -> {leaked}")
    return {"name": name, "tolerance": tol.describe(), "steps": _n_steps(inputs),
            "max_err": worst, "max_abs_err": worst_abs, "greedy_ids": ids,
            "min_top2_gap": min(gaps) if gaps else None}


# ---------------------------------------------------------------- files that must fail
def patch_op_names(pte_bytes, renames: dict) -> bytes:
    """Rename ops inside a .pte's VkGraph by rewriting same-length strings in place."""
    data = bytes(pte_bytes)
    for old, new in renames.items():
        old_b, new_b = old.encode(), new.encode()
        if len(old_b) != len(new_b):
            raise ValueError(f"patch_op_names: {old!r} and {new!r} differ in length")
        if data.count(old_b) != 1:
            raise ValueError(f"patch_op_names: {old!r} occurs {data.count(old_b)} times, expected once")
        data = data.replace(old_b, new_b)
    return data


# add_mul_sigmoid with two of its three ops renamed to names no engine knows
UNKNOWN_OPS = {"aten.mul.Tensor": "fake.mul.Tensor", "aten.sigmoid.default": "fake.sigmoid.default"}


async def run_unknown_ops_case(backend, pte_bytes) -> str:
    """A VkGraph naming unimplemented ops fails at Graph.build with ONE error listing them
    all, before allocating anything. Returns the message."""
    from ..graph.errors import OpError
    from ..pte_runner import PteSession

    patched = patch_op_names(pte_bytes, UNKNOWN_OPS)
    before = backend.memory_stats()
    try:
        session = await PteSession.create(patched, backend)
    except OpError as e:
        msg = str(e)
    else:
        session.destroy()
        raise AssertionError("a .pte with unknown ops built")
    for op in UNKNOWN_OPS.values():
        if op not in msg:
            raise AssertionError(f"error {msg!r} does not name {op}")
    if "aten.add.Tensor" in msg:
        raise AssertionError(f"error {msg!r} names an implemented op")
    after = backend.memory_stats()
    if after != before:
        raise AssertionError(f"failed build allocated GPU objects: {before} -> {after}")
    return msg


async def run_error_fixture(backend, name: str, pte_bytes) -> str:
    """A fixture the reader must reject: the typed error, its text, nothing allocated."""
    from ..pte_runner import PteSession

    cls_name, text = ERROR_FIXTURES[name]
    before = backend.memory_stats()
    try:
        session = await PteSession.create(pte_bytes, backend)
    except Exception as e:  # noqa: BLE001 - the class is checked by name just below
        if type(e).__name__ != cls_name or text not in str(e):
            raise AssertionError(f"{name}: got {type(e).__name__}: {e}, expected {cls_name} "
                                 f"mentioning {text!r}") from e
        msg = str(e)
    else:
        session.destroy()
        raise AssertionError(f"{name}: session built, expected {cls_name}")
    if backend.memory_stats() != before:
        raise AssertionError(f"{name}: a rejected file allocated GPU objects")
    return msg


async def run_bad_call_case(backend, pte_bytes, inputs: dict) -> list:
    """Wrong calls to a good session raise StepError naming the argument, and the session
    still runs afterwards (uses add_mul_sigmoid: two float32 [2, 8] arguments)."""
    from ..graph.errors import StepError
    from ..pte_runner import PteSession

    a, b = inputs["step0.arg0"], inputs["step0.arg1"]
    bad = [((a,), "expected 2 arguments, got 1"),
           ((a, b.astype(np.float64)), "argument 1 has dtype float64, expected float32"),
           ((a[:1], b), "argument 0 has shape [1, 8], expected [2, 8]")]
    session = await PteSession.create(pte_bytes, backend)
    msgs = []
    try:
        for args, text in bad:
            try:
                await session.forward(*args)
            except StepError as e:
                if text not in str(e):
                    raise AssertionError(f"error {e!r} does not say {text!r}") from e
                msgs.append(str(e))
            else:
                raise AssertionError(f"forward accepted bad arguments ({text})")
        out = (await session.forward(a, b))[0]
        if out.shape != (2, 8):
            raise AssertionError(f"session unusable after errors: output shape {out.shape}")
    finally:
        session.destroy()
    return msgs
