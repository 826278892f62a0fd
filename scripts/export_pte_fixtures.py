"""Export the small .pte fixtures in tests/fixtures/pte/ (host-only; runs in .venv-export).

    bash scripts/setup_export_env.sh            # once: torch 2.13.0 (CPU) + executorch 1.5.1
    .venv-export/bin/python scripts/export_pte_fixtures.py [name ...]

Every fixture is a tiny PyTorch module lowered through ExecuTorch's WebGPUPartitioner
(executorch 1.5.1 ships `executorch.backends.webgpu.partitioner.WebGPUPartitioner`, a thin
front of the VulkanPartitioner: both emit a `VulkanBackend` delegate holding a VK00 graph).
For each fixture NAME this writes:

- NAME.pte            the ExecuTorch program
- NAME.inputs.npz     per-step forward arguments:  "step{t}.arg{i}"
- NAME.expected.npz   per-step eager outputs:      "step{t}.out{j}"

Steps run one after another on ONE module instance, so mutable buffers (KV caches) carry
state from step to step exactly as they do in the exported program. MANIFEST.json records,
per fixture: the VkGraph op names (read back with our own .pte reader), input/output
shapes and dtypes, dynamic dims, step count and which partitioner made it.
"""
from __future__ import annotations

import copy
import json
import os
import sys
import traceback

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "pte")
sys.path.insert(0, ROOT)

import executorch.backends.vulkan.custom_ops_lib  # noqa: E402,F401  registers et_vk.*
from executorch.exir import to_edge_transform_and_lower  # noqa: E402
from executorch.extension.llm.custom_ops import custom_ops  # noqa: E402,F401  registers llama.*

try:
    from executorch.backends.webgpu.partitioner import WebGPUPartitioner as _Partitioner
    PARTITIONER = "WebGPUPartitioner"
except ImportError:  # older executorch: the WebGPU backend consumes the Vulkan delegate
    from executorch.backends.vulkan.partitioner.vulkan_partitioner import (
        VulkanPartitioner as _Partitioner,
    )
    PARTITIONER = "VulkanPartitioner"

from py_engine.loaders.pte import load_pte  # noqa: E402

FIXTURES = {}


def fixture(fn):
    FIXTURES[fn.__name__.removeprefix("fx_")] = fn
    return fn


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=_gen(seed)) * scale


# ---------------------------------------------------------------- export core
def export_and_save(name, module, example_args, steps, dynamic_shapes=None,
                    compile_options=None, capture_scalar=False, notes=""):
    """Lower `module`, run `steps` eagerly on a copy, write the three files."""
    module = module.eval()
    eager = copy.deepcopy(module)
    with torch.no_grad():
        if capture_scalar:
            with torch._dynamo.config.patch(capture_scalar_outputs=True):
                ep = torch.export.export(module, example_args, dynamic_shapes=dynamic_shapes)
        else:
            ep = torch.export.export(module, example_args, dynamic_shapes=dynamic_shapes)
        lowered = to_edge_transform_and_lower(
            ep, partitioner=[_Partitioner(compile_options or {})])
        et = lowered.to_executorch()
    pte = bytes(et.buffer)
    with open(os.path.join(OUT, f"{name}.pte"), "wb") as f:
        f.write(pte)

    inputs, expected = {}, {}
    with torch.no_grad():
        for t, args in enumerate(steps):
            for i, a in enumerate(args):
                inputs[f"step{t}.arg{i}"] = a.numpy().copy()
            outs = eager(*args)
            if isinstance(outs, torch.Tensor):
                outs = (outs,)
            for j, o in enumerate(outs):
                expected[f"step{t}.out{j}"] = o.numpy().copy()
    np.savez(os.path.join(OUT, f"{name}.inputs.npz"), **inputs)
    np.savez(os.path.join(OUT, f"{name}.expected.npz"), **expected)

    mod = load_pte(pte)  # our own reader: the manifest is what the engine will see
    dyn = {}
    if dynamic_shapes:
        specs = dynamic_shapes if isinstance(dynamic_shapes, (list, tuple)) else []
        for i, spec in enumerate(specs):
            if spec:
                dyn[str(i)] = {str(d): [dim.min, dim.max] for d, dim in spec.items()}
    entry = {
        "partitioner": PARTITIONER,
        "ops": [c.name for c in mod.program.chain],
        "op_args": sorted({_signature(mod.program, c) for c in mod.program.chain}),
        "inputs": [[list(a.shape), str(a.numpy().dtype)] for a in steps[0]],
        "outputs": [[list(expected[k].shape), str(expected[k].dtype)]
                    for k in sorted(expected) if k.startswith("step0.")],
        "dynamic_dims": dyn,
        "steps": len(steps),
        "pte_bytes": len(pte),
        "notes": notes,
    }
    return entry


def _signature(program, call) -> str:
    """`op(kind, kind, ...)`: the value kinds of an op's args, for the report."""
    kinds = []
    for a in call.args:
        v = program.values[a]
        k = type(v).__name__
        if k == "Tensor":
            k = f"Tensor[{v.dtype}{list(v.dims)}{'const' if v.constant_id >= 0 else ''}]"
        elif k in ("Int", "Double", "Bool", "String"):
            k = f"{k}({v.value!r})"
        elif k == "IntList":
            k = f"IntList{list(v.values)}"
        kinds.append(k)
    return f"{call.name}({', '.join(kinds)})"


# ---------------------------------------------------------------- simple ops
class AddMulSigmoid(torch.nn.Module):
    def forward(self, x, y):
        return torch.sigmoid(x * y + x)


@fixture
def fx_add_mul_sigmoid():
    x, y = _randn(2, 8, seed=1), _randn(2, 8, seed=2)
    return dict(module=AddMulSigmoid(), example_args=(x, y), steps=[(x, y)])


class SelectLast(torch.nn.Module):
    def forward(self, x):
        return x.select(1, -1)


@fixture
def fx_select_negative():
    x = _randn(1, 5, 16, seed=3)
    return dict(module=SelectLast(), example_args=(x,), steps=[(x,)],
                notes="x.select(1, -1)")


def main(argv):
    os.makedirs(OUT, exist_ok=True)
    manifest_path = os.path.join(OUT, "MANIFEST.json")
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    names = argv or list(FIXTURES)
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        try:
            spec = FIXTURES[name]()
            manifest[name] = export_and_save(name, **spec)
            print(f"   ops: {manifest[name]['ops']}  ({manifest[name]['pte_bytes']} bytes)")
        except Exception:  # keep going: record which fixtures could not be made
            traceback.print_exc()
            failed.append(name)
    with open(manifest_path, "w") as f:
        json.dump(dict(sorted(manifest.items())), f, indent=1)
        f.write("\n")
    if failed:
        print("FAILED:", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
