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


class _Backend:
    subgroups_directive = False

    def __init__(self, size):
        self.subgroup_min_size = size
        self.made = []

    def create_pipeline(self, code, entry, overrides, label):
        self.made.append(code)
        return len(self.made)


def test_sg_beyond_the_device_is_refused():
    with pytest.raises(ValueError, match="SG=8 needs subgroups of at least 8"):
        PipelineCache(_Backend(4)).get("quant_weights", "gemv", SG=8)
    with pytest.raises(ValueError, match="this device has none"):
        PipelineCache(_Backend(0)).get("quant_weights", "gemv", SG=2)
    backend = _Backend(4)
    PipelineCache(backend).get("quant_weights", "gemv", SG=4)
    assert "subgroupShuffleDown" in backend.made[0]


@pytest.mark.parametrize("size, lanes, want", [(0, 32, 1), (4, 32, 4), (32, 32, 32), (64, 32, 32), (32, 1, 1)])
def test_subgroup_lanes(size, lanes, want):
    assert subgroup_lanes(_Backend(size), lanes) == want
