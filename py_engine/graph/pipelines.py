"""Shader sources and the pipeline cache keyed by (shader, entry point, override constants)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path


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
            p = self.backend.create_pipeline(shader_source(shader), entry, overrides, label)
            idx = len(self.pipelines)
            self.pipelines.append(p)
            self._index[key] = idx
        return idx

    def __len__(self) -> int:
        return len(self.pipelines)

    def destroy(self) -> None:
        for p in self.pipelines:
            self.backend.release_pipeline(p)
        self.pipelines = []
        self._index = {}
