"""Renders shaders/fused_linear.wgsl from its template, shaders/fused_linear.wgsl.in.

Why generated: the fused linear kernels must decode weight blocks exactly as
quant_weights.wgsl does, and WGSL has no #include. The template pulls the dequantization
helpers and `struct Params` out of quant_weights.wgsl by text markers, so the block formats
live in one place and the pipeline cache keeps loading plain .wgsl files. A test checks that
the committed file equals the rendering; after editing either source run

    python -m py_engine.ops.fused_shader_text

A template line `//! include FILE from "START" through "END"` copies FILE's lines from the
first one starting with START to the next one starting with END (inclusive); `until "END"`
stops before it. (Imported with the op modules, it registers nothing.)
"""
from __future__ import annotations

import re
from pathlib import Path

SHADERS = Path(__file__).resolve().parents[2] / "shaders"
TEMPLATE = "fused_linear.wgsl.in"
OUTPUT = "fused_linear.wgsl"
_INCLUDE = re.compile(r'^//! include (\S+) from "([^"]*)" (through|until) "([^"]*)"\s*$')


def _region(path: Path, start: str, mode: str, end: str) -> list:
    lines = path.read_text().splitlines()
    try:
        i = next(k for k, line in enumerate(lines) if line.startswith(start))
        j = next(k for k in range(i + 1, len(lines)) if lines[k].startswith(end))
    except StopIteration:
        raise ValueError(f"fused_shader_text: {path.name} has no region from {start!r} to {end!r}") from None
    return lines[i: j + 1 if mode == "through" else j]


def render(shaders: Path = SHADERS) -> str:
    out = [f"// GENERATED from {TEMPLATE} by `python -m py_engine.ops.fused_shader_text`: edit the template.",]
    for line in (shaders / TEMPLATE).read_text().splitlines():
        m = _INCLUDE.match(line)
        if m is None:
            out.append(line)
            continue
        name, start, mode, end = m.groups()
        out.append(f"// ---- from {name} (included) ----")
        out.extend(_region(shaders / name, start, mode, end))
        out.append(f"// ---- end of {name} ----")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    (SHADERS / OUTPUT).write_text(render())
    print(f"wrote {SHADERS / OUTPUT}")
