"""update_cache.default(value, cache, input_pos, out): in-place KV-cache write.

value [1, S, H, D] (fp32) is written into cache [1, Cmax, H, D] at rows input_pos .. input_pos+S-1;
a float16 cache takes the values rounded to f16 (half the memory and the attention's reads).
S comes from value's live dims; input_pos is an Int or a live SymInt. `out` is a dummy (the
cache is the result) and is never written. The kernel (`CacheWriter`) is shared with
sdpa_with_kv_cache, which writes k and v in one dispatch through the shader's `write_kv` entry.
"""
from __future__ import annotations

import struct

from ..graph.registry import register
from .base import Op, ceil_div, workgroup_size

PARAMS = struct.Struct("<4I")
assert PARAMS.size == 16  # matches `struct Params` in update_cache.wgsl

U32_WORDS = 1 << 32  # word offsets and counts travel as u32
CACHE_DTYPES = ("float32", "float16")  # float16: packed pairs, the shaders' KV16 variants


def cache_is_f16(err, *caches) -> bool:
    """Whether the caches (Tensors) are float16: all or none, as one kernel reads them. float16
    caches hold pairs of elements per word, so a position (heads x head_dim) must be even."""
    kinds = {t.dtype for t in caches}
    if len(kinds) != 1:
        raise err(f"the caches must share one dtype, got {sorted(kinds)}")
    f16 = kinds == {"float16"}
    for t in caches if f16 else ():
        if len(t.dims) == 4 and (t.dims[2] * t.dims[3]) % 2:
            raise err(f"a float16 cache needs an even number of elements per position (heads x head_dim), "
                      f"got {list(t.dims)}")
    return f16


def check_cache_shapes(err, value_dims, cache_dims, value_what="value", cache_what="cache") -> None:
    """Static checks of a [1, S, H, D] write into a [1, Cmax, H, D] cache; `err(msg)` builds the error."""
    if len(value_dims) != 4 or len(cache_dims) != 4:
        raise err(f"{value_what} {list(value_dims)} and {cache_what} {list(cache_dims)} must both be "
                  f"[batch, seq, heads, head_dim]")
    if value_dims[0] != 1 or cache_dims[0] != 1:
        raise err(f"batch must be 1, got {value_what} {list(value_dims)} and {cache_what} {list(cache_dims)}")
    if value_dims[2] != cache_dims[2]:
        raise err(f"n_heads mismatch: {value_what} has {value_dims[2]}, {cache_what} has {cache_dims[2]}")
    if value_dims[3] != cache_dims[3]:
        raise err(f"head_dim mismatch: {value_what} has {value_dims[3]}, {cache_what} has {cache_dims[3]}")
    cache_words = cache_dims[1] * cache_dims[2] * cache_dims[3]
    if cache_words >= U32_WORDS:
        raise err(f"{cache_what} {list(cache_dims)} holds {cache_words} words, past u32 offsets")


def check_binding_sizes(err, limits, tensors) -> None:
    """Each (what, Tensor) must fit one storage binding; checked before anything is allocated."""
    for what, t in tensors:
        if t.nbytes > limits.max_storage_binding_size:
            raise err(f"{what} {list(t.dims)} needs {t.nbytes} bytes, past the device's storage binding "
                      f"limit {limits.max_storage_binding_size}")


def cache_write_params(err, seq: int, pos: int, cache_dims) -> tuple:
    """(n, dst_offset, cache_len) in words for writing `seq` rows at `pos`; validates the range
    with Python integers, so nothing can overflow before the u32 values are packed."""
    _, cmax, heads, dim = cache_dims
    if pos < 0:
        raise err(f"input_pos must be non-negative, got {pos}")
    if pos + seq > cmax:
        raise err(f"input_pos {pos} + seq_len {seq} exceeds cache capacity {cmax}")
    row = heads * dim
    n, dst, cache_len = seq * row, pos * row, cmax * row
    assert dst + n <= cache_len < U32_WORDS
    return n, dst, cache_len


class CacheWriter:
    """One dispatch of update_cache.wgsl from `value` into `cache`, or, given `pair` = (v, v_cache),
    of its `write_kv` entry writing both caches at once (pipelines shared via the cache)."""

    def __init__(self, g, value, cache, label, pair=None, share_key=None, kv16=False):
        """`share_key`: writers with equal keys get equal params every step (one shared slot).
        `kv16`: float16 caches, one thread per pair of elements."""
        self.wg = workgroup_size(g.limits)
        self.per_thread = 2 if kv16 else 1
        if share_key is None:
            self.params = g.uniforms.alloc(PARAMS.size, label)
        else:
            self.params = g.uniforms.shared(("cache_write", share_key), PARAMS.size, label)
        if pair is None:
            pipe = g.pipelines.get("update_cache", WG=self.wg, KV16=int(kv16))
            buffers = [value, cache, self.params]
        else:
            pipe = g.pipelines.get("update_cache", "write_kv", WG=self.wg, KV16=int(kv16))
            buffers = [value, cache, self.params, *pair]
        self.d = g.add_dispatch(pipe, buffers, label)

    def set(self, g, write: tuple) -> None:
        """Apply a (n, dst_offset, cache_len) from cache_write_params."""
        self.set_all(g, [self], write)

    @staticmethod
    def set_all(g, writers: list, write: tuple) -> None:
        """`set` for writers made with one share_key (one params slot)."""
        n, dst, cache_len = write
        first = writers[0]
        first.params.write(PARAMS.pack(n, dst, cache_len, 0))
        g.set_workgroups_rows([w.d for w in writers], ceil_div(n, first.wg * first.per_thread))


@register("update_cache.default", "llama.update_cache.default")
class UpdateCache(Op):
    def validate(self, ctx):
        self.expect_args(4)
        self.value, self.cache, pos_id, self.out = self.args
        v = ctx.tensor(self.name, self.value, "value", dtypes=("float32",), rank=4)
        c = ctx.tensor(self.name, self.cache, "cache", dtypes=CACHE_DTYPES, rank=4)
        self.kv16 = cache_is_f16(self.error, c)
        ctx.tensor(self.name, self.out, "out")
        check_cache_shapes(self.error, v.dims, c.dims)
        check_binding_sizes(self.error, ctx.limits, (("value", v), ("cache", c)))
        self.cache_dims = tuple(c.dims)
        self.pos = ctx.int_or_symint(self.name, pos_id, "input_pos")
        if self.pos[0] == "int":
            # A constant position must fit the largest write the graph allows.
            cache_write_params(self.error, v.dims[1], self.pos[1], self.cache_dims)
        self.triggers = frozenset([self.value] + ([pos_id] if self.pos[0] == "symint" else []))

    def build(self, g):
        self.writer = CacheWriter(g, g.tensor(self.value), g.tensor(self.cache), self.name, kv16=self.kv16)

    def configure(self, g):
        dims = g.tensor(self.value).dims
        if tuple(dims[2:]) != self.cache_dims[2:]:
            raise self.step_error(f"live value dims {list(dims)} do not match cache {list(self.cache_dims)}")
        self.writer.set(g, cache_write_params(self.step_error, dims[1], g.live_int(self.pos), self.cache_dims))
