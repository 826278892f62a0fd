"""The subgroup and plain texts of a shader (`//#if SUBGROUPS` blocks) and the pipeline cache's
refusal of an SG the device cannot honour."""
import pytest

from py_engine.graph.pipelines import PipelineCache, shader_text, subgroup_lanes


def test_subgroup_blocks_kept_or_dropped():
    plain = shader_text("fused_linear")
    sub = shader_text("fused_linear", True)
    browser = shader_text("fused_linear", True, True)
    assert "subgroupShuffleDown" not in plain and "//#" not in plain and "let total = ssq[0];" in plain
    assert "subgroupShuffleDown" in sub and "//#" not in sub and "let total = ssq[0];" not in sub
    assert browser == "enable subgroups;\n" + sub and not sub.startswith("enable")


def test_kv16_blocks_declare_packed_caches():
    f32, f16 = shader_text("sdpa_decode_lanes"), shader_text("sdpa_decode_lanes", kv16=True)
    assert "array<Half16>" in f16 and "unpack2x16float" in f16 and "//#" not in f16
    assert "array<Half16>" not in f32 and "k_cache: array<Slice>" in f32 and "//#" not in f32


def test_bias_blocks_read_the_biases_through_the_scales_binding():
    """BIAS=1 pipelines (biased q/k/v, Qwen2) differ from the plain ones in one line: with_bias
    adds scales[n], the binding GGUF weights leave unused, so no storage binding is added."""
    import difflib

    plain, bias = shader_text("fused_linear"), shader_text("fused_linear", bias=True)
    changed = [d for d in difflib.unified_diff(plain.splitlines(), bias.splitlines(), lineterm="", n=0)
               if d[:1] in "+-" and not d.startswith(("+++", "---"))]
    assert changed == ["-  return v;", "+  return v + scales[n];"], changed


def test_unknown_switch_is_refused(monkeypatch):
    from py_engine.graph import pipelines

    shader_text.cache_clear()
    monkeypatch.setattr(pipelines, "shader_source", lambda name: "//#if FAST\nx\n//#endif\n")
    try:
        with pytest.raises(ValueError, match="unknown switch //#if FAST"):
            shader_text("any")
    finally:
        shader_text.cache_clear()


class _Backend:
    subgroups_directive = False

    def __init__(self, size):
        self.subgroup_min_size = size
        self.made = []
        self.constants = []

    def create_pipeline(self, code, entry, overrides, label):
        self.made.append(code)
        self.constants.append(overrides)
        return len(self.made)


def test_sg_beyond_the_device_is_refused():
    with pytest.raises(ValueError, match="SG=8 needs subgroups of at least 8"):
        PipelineCache(_Backend(4)).get("quant_weights", "gemv", SG=8)
    with pytest.raises(ValueError, match="this device has none"):
        PipelineCache(_Backend(0)).get("quant_weights", "gemv", SG=2)
    backend = _Backend(4)
    PipelineCache(backend).get("quant_weights", "gemv", SG=4)
    assert "subgroupShuffleDown" in backend.made[0]


def test_kv16_is_a_text_switch_not_a_constant():
    backend = _Backend(4)
    PipelineCache(backend).get("update_cache", "write_kv", WG=64, KV16=1)
    assert "pack2x16float" in backend.made[0] and backend.constants[0] == {"WG": 64}


@pytest.mark.parametrize("size, lanes, want", [(0, 32, 1), (4, 32, 4), (32, 32, 32), (64, 32, 32), (32, 1, 1)])
def test_subgroup_lanes(size, lanes, want):
    assert subgroup_lanes(_Backend(size), lanes) == want


def test_mma_blocks_enable_subgroup_matrices():
    """The matrix-unit kernels exist only in the MMA text, which enables f16 and subgroup matrices
    (Chromium's compiler alone takes them: no adapter here offers them, see
    docs/benchmarks.md for the H200 runs)."""
    for name, entries in (("quant_weights", ("tiled_mma",)),
                          ("fused_linear", ("tiled2_mma", "tiled3_mma", "tiled_swiglu_mma"))):
        plain, mma = shader_text(name), shader_text(name, mma=True)
        assert mma.startswith("enable f16;\nenable chromium_experimental_subgroup_matrix;\n") and "//#" not in mma
        assert mma.count("fn mma_tile(") == 1 and all(f"fn {e}(" in mma for e in entries)
        assert "subgroup_matrix" not in plain and "mma_" not in plain and "f16(" not in plain


def test_mma_is_a_text_switch_not_a_constant():
    backend = _Backend(32)
    PipelineCache(backend).get("quant_weights", "tiled_mma", FMT=35, MMA=1, MI=1, NJ=2, MPF=0)
    assert "subgroupMatrixMultiplyAccumulate" in backend.made[0]
    assert backend.constants[0] == {"FMT": 35, "MI": 1, "NJ": 2, "MPF": 0}
