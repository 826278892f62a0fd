"""Which view outputs can share their input's buffer instead of copying it.

A view of a contiguous tensor holds the same bytes; it may alias its source when neither is
written in place by any op (KV caches are), neither is a constant or a program input, and
both have the same dtype. Tensors are written once per step by their producer otherwise, so
a shared buffer can never be seen half-updated.
"""
from __future__ import annotations

from ..program import Tensor

# Ops that write some of their arguments in place (KV caches, K before V): op name -> argument
# positions. generate.py reads the context length off the first one.
INPLACE_ARGS = {
    "update_cache.default": (1,),
    "sdpa_with_kv_cache.default": (3, 4),
    "llama.sdpa_with_kv_cache.default": (3, 4),
    "py_engine.apply_rotary_emb_qk_kv.default": (5, 6),
    "py_engine.sdpa_kv_written.default": (3, 4),  # read only, but the same caches
    "py_engine.rope_sdpa_kv.default": (5, 6, 12, 13),
    "py_engine.apply_rotary_emb_qk_kv_at.default": (5, 6),
    "py_engine.rope_sdpa_kv_at.default": (5, 6, 12, 13),
}


def plan_aliases(program, ops) -> dict:
    """out value id -> source value id, for every view op that may alias."""
    written = set()
    for call in program.chain:
        for i in INPLACE_ARGS.get(call.name, ()):
            if i < len(call.args):
                written.add(call.args[i])
    inputs = set(program.input_ids)
    aliases = {}
    for op in ops:
        pair = getattr(op, "alias_pair", None)
        if pair is None:
            continue
        src, out = pair
        s, o = program.values[src], program.values[out]
        if not (isinstance(s, Tensor) and isinstance(o, Tensor)):
            continue
        if s.dtype != o.dtype or s.constant_id >= 0 or o.constant_id >= 0:
            continue
        if {src, out} & written or out in inputs or out in aliases:
            continue
        aliases[out] = src
    return aliases


def root(aliases: dict, vid: int) -> int:
    while vid in aliases:
        vid = aliases[vid]
    return vid
