"""numpy references: the semantics every GPU op and the whole llama model are tested against.

Pure Python + numpy (runs in CPython and Pyodide). Float math is done in float64 and
results are float32. `ops` holds every op; `llama` the whole-model reference.
"""
from .ops import *  # noqa: F401,F403
from .ops import __all__ as _ops_all

__all__ = list(_ops_all)
