"""Renders the generated shaders from their templates: shaders/X.wgsl from shaders/X.wgsl.in
(fused_linear, attention_block).

Why generated: the fused linear kernels must decode weight blocks exactly as
quant_weights.wgsl does, and WGSL has no #include. A template pulls the dequantization
helpers and `struct Params` out of quant_weights.wgsl (or other pieces out of another
template) by text markers, so each piece lives in one place and the pipeline cache keeps
loading plain .wgsl files. A test checks that the committed files equal the rendering; after
editing any source run

    python -m py_engine.ops.fused_shader_text

A template line `//! include FILE from "START" through "END"` copies FILE's lines from the
first one starting with START to the next one starting with END (inclusive); `until "END"`
stops before it. (Imported with the op modules, it registers nothing.)
"""
from __future__ import annotations

import re
from pathlib import Path

SHADERS = Path(__file__).resolve().parents[2] / "shaders"
OUTPUTS = ("fused_linear.wgsl", "attention_block.wgsl")
_INCLUDE = re.compile(r'^//! include (\S+) from "([^"]*)" (through|until) "([^"]*)"\s*$')


def _region(path: Path, start: str, mode: str, end: str) -> list:
    lines = path.read_text().splitlines()
    try:
        i = next(k for k, line in enumerate(lines) if line.startswith(start))
        j = next(k for k in range(i + 1, len(lines)) if lines[k].startswith(end))
    except StopIteration:
        raise ValueError(f"fused_shader_text: {path.name} has no region from {start!r} to {end!r}") from None
    return lines[i: j + 1 if mode == "through" else j]


def render(output: str, shaders: Path = SHADERS) -> str:
    """The text of generated shader `output` (one of OUTPUTS)."""
    template = output + ".in"
    out = [f"// GENERATED from {template} by `python -m py_engine.ops.fused_shader_text`: edit the template.",]
    for line in (shaders / template).read_text().splitlines():
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
    for name in OUTPUTS:
        (SHADERS / name).write_text(render(name))
        print(f"wrote {SHADERS / name}")
