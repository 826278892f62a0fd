"""The diagnostics page's check: find the GPU, run a small graph, compare it with numpy."""
from __future__ import annotations

from .foundation_cases import chain_static
from .harness import run_case
from .shared_backend import shared_backend


async def run_demo(log=print) -> dict:
    backend = await shared_backend()
    info = backend.adapter_info
    adapter = " / ".join(v for v in (info.get("vendor"), info.get("architecture"), info.get("description")) if v)
    log(f"adapter: {adapter or 'unnamed'}; features: {', '.join(sorted(backend.features)) or 'none'}")
    log("running add -> sigmoid -> rms_norm -> view_copy (two steps) and checking against numpy")
    try:
        result = await run_case(backend, chain_static(), "demo")
    except AssertionError as e:
        return {"adapter": adapter, "ok": False, "error": str(e)}
    return {"adapter": adapter or "unnamed adapter", "ok": True, "max_err": result["max_err"],
            "dispatches": result["stats"]["dispatches"]}
