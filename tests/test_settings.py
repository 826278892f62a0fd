"""Engine switches set by name (py_engine.settings), as the benchmarks' --set does."""
import pytest

from py_engine.graph import pipelines
from py_engine.ops import quant_kernels
from py_engine.settings import apply_setting


def test_setting_sets_a_switch_by_name(monkeypatch):
    monkeypatch.setattr(pipelines, "SUBGROUP_REDUCE", True)
    apply_setting("graph.pipelines.SUBGROUP_REDUCE=0")
    assert pipelines.SUBGROUP_REDUCE is False
    apply_setting("graph.pipelines.SUBGROUP_REDUCE=1")
    assert pipelines.SUBGROUP_REDUCE is True


def test_setting_a_dataclass_switch(monkeypatch):
    monkeypatch.setattr(quant_kernels, "GPU_GEMV", quant_kernels.GPU_GEMV)
    apply_setting("ops.quant_kernels.GPU_GEMV=64,32,1")
    assert quant_kernels.GPU_GEMV == quant_kernels.GemvShape(64, 32, 1)
    with pytest.raises(ValueError, match="takes GemvShape values"):
        apply_setting("ops.quant_kernels.GPU_GEMV=64,32")
    assert quant_kernels.GPU_GEMV == quant_kernels.GemvShape(64, 32, 1)


@pytest.mark.parametrize("bad, message", [
    ("graph.pipelines.SUBGROUP_REDUCE", "expected module.NAME=value"),
    ("SUBGROUP_REDUCE=0", "expected module.NAME=value"),
    ("graph.nowhere.SUBGROUP_REDUCE=0", "no module py_engine.graph.nowhere"),
    ("graph.pipelines.NO_SUCH_SWITCH=0", "has no switch NO_SUCH_SWITCH"),
    ("graph.pipelines.shader_text=0", "has no switch shader_text"),
    ("graph.pipelines.SUBGROUP_REDUCE=yes", "takes bool values"),
])
def test_bad_setting_is_refused_and_changes_nothing(monkeypatch, bad, message):
    monkeypatch.setattr(pipelines, "SUBGROUP_REDUCE", True)
    with pytest.raises(ValueError, match=message):
        apply_setting(bad)
    assert pipelines.SUBGROUP_REDUCE is True
