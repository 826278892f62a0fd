"""et_vk.apply_rotary_emb.default -> py_engine.apply_rotary_emb_qk.default (same arguments).

The op rotates q and k with one kernel in two dispatches; the fused op does both in one.
Nothing else changes, so every call is rewritten in place.
"""
from __future__ import annotations

from ..program import OpCall, Program
from .program_index import clone

ROPE = "et_vk.apply_rotary_emb.default"
FUSED = "py_engine.apply_rotary_emb_qk.default"


def fuse_rope(program: Program) -> Program:
    out = clone(program)
    out.chain = [OpCall(FUSED, c.args) if c.name == ROPE and len(c.args) == 5 else c for c in program.chain]
    return out
