"""The engine's switches (module constants such as `graph.pipelines.SUBGROUP_REDUCE`) set by
name, so benchmarks can compare both sides of one in the same run: `module.NAME=value` with
`module` under py_engine; bools and ints take integers, dataclasses of ints (such as a
GemvShape) comma-separated integers."""
from __future__ import annotations

import dataclasses
import importlib


def apply_setting(setting: str) -> None:
    """Set one switch; a malformed setting or an unknown switch raises ValueError."""
    path, sep, value = setting.partition("=")
    module, _, name = path.rpartition(".")
    if not sep or not module or not name:
        raise ValueError(f"setting {setting!r}: expected module.NAME=value")
    try:
        mod = importlib.import_module(f"py_engine.{module}")
    except ImportError as e:
        raise ValueError(f"setting {setting!r}: no module py_engine.{module}") from e
    if not hasattr(mod, name) or not name.isupper():
        raise ValueError(f"setting {setting!r}: py_engine.{module} has no switch {name}")
    old = getattr(mod, name)
    try:
        if dataclasses.is_dataclass(old):
            new = type(old)(*(int(v) for v in value.split(",")))
        else:
            new = type(old)(int(value)) if isinstance(old, (bool, int)) else type(old)(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"setting {setting!r}: {name} takes {type(old).__name__} values") from e
    setattr(mod, name, new)
