"""One GPU backend per interpreter for test runs (a page's tests share one device)."""
from __future__ import annotations

_backend = None


async def shared_backend():
    global _backend
    if _backend is None:
        from ..gpu import create_backend

        _backend = await create_backend()
    return _backend
