"""Shader sources and the pipeline cache keyed by (shader, entry point, override constants)."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

# Text switches: shaders mark code with lines `//#if NAME`, optionally `//#else`, and `//#endif`
# (not nested); a pipeline with the switch on gets the first branch. SUBGROUPS (subgroup
# builtins) is on when the override SG is above 1; KV16 (KV caches of packed f16 pairs, whose
# bindings change type) when the pipeline is asked for with KV16=1, MMA (the tiled kernels on
# the matrix units: chromium-experimental-subgroup-matrix with f16) with MMA=1, and BIAS (the
# fused linears' bias binding) with BIAS=1; none is passed on as an override constant.
_BLOCK = re.compile(r"^//#if (\w+)\n(.*?)(?:^//#else\n(.*?))?^//#endif\n", re.M | re.S)

# Reductions finish with subgroup shuffles where the device has subgroups (a switch for
# benchmarks and tests: False keeps every tree level in workgroup memory).
SUBGROUP_REDUCE = True


@lru_cache(maxsize=None)
def shader_source(name: str) -> str:
    """The text of `shaders/<name>.wgsl`, from the installed wheel or the source tree."""
    filename = f"{name}.wgsl"
    try:
        from importlib.resources import files

        res = files("py_engine.shaders").joinpath(filename)
        if res.is_file():
            return res.read_text()
    except (ModuleNotFoundError, FileNotFoundError, TypeError):
        pass
    path = Path(__file__).resolve().parents[2] / "shaders" / filename
    if not path.is_file():
        raise FileNotFoundError(f"shader {filename} not found (looked in py_engine.shaders and {path.parent})")
    return path.read_text()


@lru_cache(maxsize=None)
def shader_text(name: str, subgroups: bool = False, directive: bool = False, kv16: bool = False,
                mma: bool = False, bias: bool = False) -> str:
    """The shader with its switch blocks resolved: SUBGROUPS by `subgroups`, KV16 by `kv16`, MMA
    by `mma` (which also enables f16 and the subgroup matrices), BIAS by `bias`; `directive` adds
    the `enable subgroups;` that Chrome requires (and wgpu's naga rejects)."""
    on = {"SUBGROUPS": subgroups, "KV16": kv16, "MMA": mma, "BIAS": bias}

    def resolve(m):
        if m.group(1) not in on:
            raise ValueError(f"shader {name}: unknown switch //#if {m.group(1)} (known: {', '.join(on)})")
        return m.group(2) if on[m.group(1)] else (m.group(3) or "")

    text = _BLOCK.sub(resolve, shader_source(name))
    if mma:
        text = "enable f16;\nenable chromium_experimental_subgroup_matrix;\n" + text
    return "enable subgroups;\n" + text if subgroups and directive else text


def subgroup_lanes(backend, lanes: int) -> int:
    """The SG override of a reduction over `lanes` consecutive invocations (a power of two): how
    many of them subgroup shuffles may combine; 1 means none (no subgroups, or switched off)."""
    size = getattr(backend, "subgroup_min_size", 0) if SUBGROUP_REDUCE else 0
    return max(1, min(size, lanes))


class PipelineCache:
    def __init__(self, backend):
        self.backend = backend
        self.pipelines: list = []  # index -> backend pipeline
        self._index: dict = {}

    def get(self, shader: str, entry: str = "main", **overrides) -> int:
        """Index of the pipeline for this shader/entry/overrides, created on first use."""
        key = (shader, entry, tuple(sorted(overrides.items())))
        idx = self._index.get(key)
        if idx is None:
            label = f"{shader}:{entry}" + "".join(f",{k}={v}" for k, v in key[2])
            sg = overrides.get("SG", 1)
            if sg > 1 and sg > getattr(self.backend, "subgroup_min_size", 0):
                raise ValueError(f"{label}: SG={sg} needs subgroups of at least {sg} invocations; "
                                 f"this device has {getattr(self.backend, 'subgroup_min_size', 0) or 'none'}")
            code = shader_text(shader, sg > 1, sg > 1 and getattr(self.backend, "subgroups_directive", False),
                               bool(overrides.get("KV16", 0)), bool(overrides.get("MMA", 0)),
                               bool(overrides.get("BIAS", 0)))
            constants = {k: v for k, v in overrides.items() if k not in ("KV16", "MMA", "BIAS")}
            p = self.backend.create_pipeline(code, entry, constants, label)
            idx = len(self.pipelines)
            self.pipelines.append(p)
            self._index[key] = idx
        return idx

    def __len__(self) -> int:
        return len(self.pipelines)

    def entries(self) -> set:
        """The entry point names of the pipelines made so far."""
        return {key[1] for key in self._index}

    def destroy(self) -> None:
        for p in self.pipelines:
            self.backend.release_pipeline(p)
        self.pipelines = []
        self._index = {}
