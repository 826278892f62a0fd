"""Op registry keyed by ExecuTorch op name (`aten.add.Tensor`, `et_vk.rms_norm.default`, ...)."""
from __future__ import annotations

_REGISTRY: dict = {}


def register(*names: str):
    """Class decorator: the class builds the op calls with these names."""

    def deco(cls):
        for n in names:
            if n in _REGISTRY and _REGISTRY[n] is not cls:
                raise RuntimeError(f"op {n} registered twice")
            _REGISTRY[n] = cls
        return cls

    return deco


def lookup(name: str):
    _ensure_loaded()
    return _REGISTRY.get(name)


def known_ops() -> list:
    _ensure_loaded()
    return sorted(_REGISTRY)


def _ensure_loaded() -> None:
    # Importing the ops package registers every op module.
    from .. import ops  # noqa: F401
