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

from py_engine.loaders.pte import PteError, load_pte  # noqa: E402

FIXTURES = {}


def fixture(fn):
    FIXTURES[fn.__name__.removeprefix("fx_")] = fn
    return fn


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=_gen(seed)) * scale


# ---------------------------------------------------------------- export core
def export_and_save(name, module=None, example_args=None, steps=(), dynamic_shapes=None,
                    compile_options=None, capture_scalar=False, notes="", llama_args=None,
                    partition=True):
    """Lower `module` (or run the llama export), run `steps` eagerly, write the files."""
    if llama_args is not None:
        pte, model = _llama_export(name, llama_args, notes)
        return _save(name, pte, _LlamaStep(model), steps, "from_plan", notes,
                     partitioner="VulkanPartitioner (export_llama -V)")
    if not isinstance(module, torch.fx.GraphModule):  # pt2e-converted models refuse eval()
        module = module.eval()
    eager = copy.deepcopy(module)
    steps = [tuple(a.clone() for a in args) for args in steps]  # eager may mutate them
    with torch.no_grad():
        if capture_scalar:
            with torch._dynamo.config.patch(capture_scalar_outputs=True):
                ep = torch.export.export(module, example_args, dynamic_shapes=dynamic_shapes)
        else:
            ep = torch.export.export(module, example_args, dynamic_shapes=dynamic_shapes)
        partitioners = [_Partitioner(compile_options or {})] if partition else []
        lowered = to_edge_transform_and_lower(ep, partitioner=partitioners)
        et = lowered.to_executorch()
    pte = bytes(et.buffer)
    return _save(name, pte, eager, steps, dynamic_shapes, notes,
                 partitioner=PARTITIONER if partition else "none")


def _save(name, pte, eager, steps, dynamic_shapes, notes, partitioner=PARTITIONER):
    with open(os.path.join(OUT, f"{name}.pte"), "wb") as f:
        f.write(pte)

    inputs, expected = {}, {}
    with torch.no_grad():
        for t, args in enumerate(steps):
            for i, a in enumerate(args):
                inputs[f"step{t}.arg{i}"] = a.numpy().copy()
            before = [a.clone() for a in args]
            outs = eager(*args)
            for i, (a, b) in enumerate(zip(args, before)):
                if not torch.equal(a, b):  # mutated in place: the program writes it back
                    inputs[f"step{t}.arg{i}"] = b.numpy().copy()
                    expected[f"step{t}.arg{i}.after"] = a.numpy().copy()
            if isinstance(outs, torch.Tensor):
                outs = (outs,)
            for j, o in enumerate(outs):
                expected[f"step{t}.out{j}"] = o.numpy().copy()
    np.savez(os.path.join(OUT, f"{name}.inputs.npz"), **inputs)
    np.savez(os.path.join(OUT, f"{name}.expected.npz"), **expected)

    try:
        mod = load_pte(pte)  # our own reader: the manifest is what the engine will see
    except PteError as exc:  # fixtures made to be rejected record why
        return {"partitioner": partitioner, "expect_error": str(exc), "notes": notes,
                "pte_bytes": len(pte)}
    dyn = {}
    if dynamic_shapes == "from_plan":  # llama export: S of the tokens is dynamic
        dyn = {str(fi.index): {"1": [1, fi.sizes[1]]} for fi in mod.forward_inputs
               if fi.dynamic}
    elif dynamic_shapes:
        specs = dynamic_shapes if isinstance(dynamic_shapes, (list, tuple)) else []
        for i, spec in enumerate(specs):
            if spec:
                dyn[str(i)] = {str(d): [dim.min, dim.max] for d, dim in spec.items()}
    entry = {
        "partitioner": partitioner,
        "ops": [c.name for c in mod.program.chain],
        "op_args": sorted({_signature(mod.program, c) for c in mod.program.chain}),
        "inputs": [[list(a.shape), str(a.numpy().dtype)] for a in steps[0]],
        "outputs": [[list(expected[k].shape), str(expected[k].dtype)]
                    for k in sorted(expected) if k.startswith("step0.out")],
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


Dim = torch.export.Dim


@fixture
def fx_error_no_delegate():
    x, y = _randn(2, 8, seed=1), _randn(2, 8, seed=2)
    return dict(module=AddMulSigmoid(), example_args=(x, y), steps=[(x, y)], partition=False,
                notes="lowered without a partitioner: portable CPU kernels, no delegate; "
                      "the reader must reject it")


# ---------------------------------------------------------------- KV cache ops
class UpdateCacheBuffer(torch.nn.Module):
    """update_cache into a mutable-buffer cache at a fixed non-zero position."""

    def __init__(self, cmax=8, h=2, d=4, pos=3):
        super().__init__()
        self.pos = pos
        self.register_buffer("cache", torch.zeros(1, cmax, h, d))

    def forward(self, value):
        torch.ops.llama.update_cache(value, self.cache, self.pos)
        return self.cache + 0.0


@fixture
def fx_update_cache_pos3():
    v = _randn(1, 2, 2, 4, seed=4)
    return dict(module=UpdateCacheBuffer(), example_args=(v,), steps=[(v,)],
                notes="cache [1,8,2,4] is a mutable buffer; value [1,2,2,4] written at "
                      "input_pos=3; output = cache + 0")


class UpdateCacheInput(torch.nn.Module):
    """update_cache into a cache passed as a forward argument (a mutated input)."""

    def forward(self, value, cache):
        torch.ops.llama.update_cache(value, cache, 5)
        return cache * 1.0


@fixture
def fx_update_cache_input_pos5():
    v, c = _randn(1, 2, 2, 4, seed=5), _randn(1, 8, 2, 4, seed=6)
    return dict(module=UpdateCacheInput(), example_args=(v, c), steps=[(v, c)],
                notes="cache is forward arg 1 and is mutated in place at input_pos=5")


class Rope(torch.nn.Module):
    def forward(self, xq, xk, cos, sin):
        return torch.ops.et_vk.apply_rotary_emb(xq, xk, cos, sin)


def _rope_args(s, hq=4, hkv=2, d=8, seed=7, pos=0):
    xq, xk = _randn(1, s, hq, d, seed=seed), _randn(1, s, hkv, d, seed=seed + 1)
    inv = 1.0 / (10000.0 ** (torch.arange(0, d, 2).float() / d))
    ang = torch.outer(torch.arange(pos, pos + s).float(), inv)
    return xq, xk, torch.cos(ang), torch.sin(ang)


@fixture
def fx_rope_gqa_static():
    a = _rope_args(3)
    return dict(module=Rope(), example_args=a, steps=[a],
                notes="et_vk.apply_rotary_emb: xq [1,3,4,8], xk [1,3,2,8], freqs [3,4]")


@fixture
def fx_rope_gqa_dynamic():
    s = Dim("S", min=1, max=8)
    a = _rope_args(3)
    return dict(module=Rope(), example_args=a,
                steps=[_rope_args(5, seed=11), _rope_args(1, seed=12, pos=5)],
                dynamic_shapes=({1: s}, {1: s}, {0: s}, {0: s}),
                notes="dynamic S (max 8); steps S=5 then S=1")


class SdpaKV(torch.nn.Module):
    """sdpa_with_kv_cache with mutable-buffer caches; input_pos is an int64 tensor [1]."""

    def __init__(self, cmax=16, hkv=2, d=8):
        super().__init__()
        self.register_buffer("k_cache", torch.zeros(1, cmax, hkv, d))
        self.register_buffer("v_cache", torch.zeros(1, cmax, hkv, d))

    def forward(self, q, k, v, input_pos):
        start = input_pos[0].item()
        seq = q.shape[1]
        torch._check(start >= 0)
        torch._check(start + seq <= self.k_cache.shape[1])
        return torch.ops.llama.sdpa_with_kv_cache(
            q, k, v, self.k_cache, self.v_cache, start, seq, None, 0.0, True, None)


def _sdpa_args(s, pos, seed, hq=4, hkv=2, d=8):
    return (_randn(1, s, hq, d, seed=seed), _randn(1, s, hkv, d, seed=seed + 1),
            _randn(1, s, hkv, d, seed=seed + 2), torch.tensor([pos], dtype=torch.long))


@fixture
def fx_sdpa_kv_cache():
    s = Dim("S", min=1, max=8)
    steps = [_sdpa_args(4, 0, 20), _sdpa_args(1, 4, 30), _sdpa_args(1, 5, 40),
             _sdpa_args(2, 6, 50)]
    return dict(module=SdpaKV(), example_args=_sdpa_args(4, 0, 20), steps=steps,
                dynamic_shapes=({1: s}, {1: s}, {1: s}, None), capture_scalar=True,
                notes="GQA 4:2, D=8, Cmax=16, caches are mutable buffers; input_pos "
                      "tensor read through select_as_symint; steps: prefill S=4@0, "
                      "decode S=1@4, S=1@5, S=2@6")


# ---------------------------------------------------------------- norms
class RmsNormPattern(torch.nn.Module):
    """The llama RMSNorm as written in PyTorch (the partitioner fuses it)."""

    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.linspace(0.5, 1.5, dim))

    def forward(self, x):
        n = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return n * self.weight


class RmsNormOp(torch.nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.linspace(0.5, 1.5, dim))

    def forward(self, x):
        return torch.ops.et_vk.rms_norm(x, self.weight, self.eps)


@fixture
def fx_rms_norm_static():
    x = _randn(1, 3, 32, seed=60)
    return dict(module=RmsNormOp(32), example_args=(x,), steps=[(x,)],
                notes="et_vk.rms_norm called directly; eps 1e-5")


@fixture
def fx_rms_norm_dynamic():
    x = _randn(1, 3, 32, seed=61)
    return dict(module=RmsNormOp(32), example_args=(x,),
                steps=[(_randn(1, 6, 32, seed=62),), (_randn(1, 1, 32, seed=63),)],
                dynamic_shapes=({1: Dim("S", min=1, max=8)},),
                notes="dynamic S (max 8)")


@fixture
def fx_rms_norm_pattern():
    x = _randn(1, 3, 32, seed=64)
    return dict(module=RmsNormPattern(32), example_args=(x,), steps=[(x,)],
                notes="plain PyTorch RMSNorm: shows what the partitioner makes of it")


# ---------------------------------------------------------------- quantized
def _q4gsw_linear(k, n, group, seed):
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_api import IntxWeightOnlyConfig, quantize_
    torch.manual_seed(seed)
    m = torch.nn.Linear(k, n, bias=False).eval()
    quantize_(m, IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group)))
    return m


@fixture
def fx_linear_q4gsw_static():
    x = _randn(2, 64, seed=70)
    return dict(module=_q4gsw_linear(64, 32, 32, 0), example_args=(x,), steps=[(x,)],
                notes="torchao int4 weight-only, group 32: x [2,64] -> [2,32]")


@fixture
def fx_linear_q4gsw_dynamic():
    x = _randn(1, 3, 64, seed=71)
    return dict(module=_q4gsw_linear(64, 32, 32, 1), example_args=(x,),
                steps=[(_randn(1, 5, 64, seed=72),), (_randn(1, 1, 64, seed=73),)],
                dynamic_shapes=({1: Dim("M", min=1, max=8)},),
                notes="x [1,M,64], dynamic M (max 8)")


class Embedding(torch.nn.Module):
    def __init__(self, vocab, dim):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)

    def forward(self, idx):
        return self.emb(idx)


@fixture
def fx_embedding_q4gsw():
    from executorch.examples.models.llama.source_transformation.quantize import (
        EmbeddingQuantHandler,
    )
    torch.manual_seed(0)
    qm = EmbeddingQuantHandler(Embedding(64, 64).eval(), device="cpu", bitwidth=4,
                               group_size=32, packed=True,
                               quantize_with_hqq=False).quantized_model().eval()
    idx = torch.tensor([[1, 5, 63, 0]], dtype=torch.long)
    return dict(module=qm, example_args=(idx,), steps=[(idx,)],
                notes="4-bit packed embedding, group 32, vocab 64, dim 64; int64 indices")


def _qcs4w_linear(k, n, m, seed):
    from executorch.backends.vulkan.quantizer.vulkan_quantizer import (
        VulkanQuantizer, get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    torch.manual_seed(seed)
    lin = torch.nn.Linear(k, n, bias=False).eval()
    ex = (torch.randn(m, k),)
    q = VulkanQuantizer().set_global(
        get_symmetric_quantization_config(is_dynamic=False, weight_bits=4))
    prepared = prepare_pt2e(torch.export.export(lin, ex).module(), q)
    prepared(*ex)
    return convert_pt2e(prepared)


@fixture
def fx_linear_qcs4w():
    x = _randn(4, 32, seed=80)
    return dict(module=_qcs4w_linear(32, 16, 4, 2), example_args=(x,), steps=[(x,)],
                notes="VulkanQuantizer 4-bit per-channel symmetric weights: x [4,32] -> [4,16]")


# ---------------------------------------------------------------- tiny llama
TINY_LLAMA_PARAMS = {
    "dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": 128,
    "multiple_of": 32, "ffn_dim_multiplier": None, "norm_eps": 1e-5,
    "rope_theta": 10000.0, "use_scaled_rope": False,
}


def _llama_export(name, extra_args, notes):
    """ExecuTorch's own llama export (examples/models/llama) on a tiny random model.

    Returns (pte bytes, eager transformed model). The eager model is the one the export
    traced (quantized, custom sdpa, KV cache), so its outputs are the expected ones.
    """
    import tempfile
    from executorch.examples.models.llama.export_llama_lib import (
        _export_llama, build_args_parser,
    )
    from executorch.extension.llm.export.config.llm_config import LlmConfig
    tmp = tempfile.mkdtemp(prefix="tiny_llama_")
    params = os.path.join(tmp, "params.json")
    with open(params, "w") as f:
        json.dump(TINY_LLAMA_PARAMS, f)
    ckpt = os.path.join(tmp, "tiny.pth")
    torch.save(_tiny_llama_weights(), ckpt)
    argv = ["--model", "llama3", "--params", params, "-c", ckpt,
            "-kv", "--use_sdpa_with_kv_cache",
            "-V", "-qmode", "4w", "-G", "32", "-d", "fp32", "--max_seq_length", "8",
            "--max_context_length", "16", "--output-dir", tmp,
            "-n", os.path.join(tmp, f"{name}.pte"),
            *extra_args]
    args = build_args_parser().parse_args(argv)
    cfg = LlmConfig.from_args(args)
    torch.manual_seed(0)  # random weights, fixed
    builder = _export_llama(cfg)
    with open(os.path.join(tmp, f"{name}.pte"), "rb") as f:
        pte = f.read()
    return pte, builder.model.eval()


def _tiny_llama_weights() -> dict:
    """A seeded checkpoint: without one the export leaves weights uninitialized (NaNs)."""
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs
    params = {k: v for k, v in TINY_LLAMA_PARAMS.items() if v is not None}
    model = construct_transformer(ModelArgs(**params))
    g = _gen(1234)
    state = {}
    for key, t in model.state_dict().items():
        if not t.is_floating_point() or "cache" in key or "freqs" in key or "mask" in key:
            continue
        if key.endswith("norm.weight"):
            state[key] = 1.0 + 0.1 * torch.randn(t.shape, generator=g)
        else:
            fan_in = t.shape[-1] if t.dim() > 1 else 1
            state[key] = torch.randn(t.shape, generator=g) / fan_in ** 0.5
    return state


class _LlamaStep(torch.nn.Module):
    """forward(tokens, input_pos) as the exported method sees its two arguments."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens, input_pos):
        return self.model(tokens, {"input_pos": input_pos})


def _llama_steps():
    g = _gen(90)
    prompt = torch.randint(0, 128, (1, 5), generator=g)
    steps = [(prompt, torch.tensor([0]))]
    for pos in range(5, 9):  # several decode steps, one token each
        steps.append((torch.randint(0, 128, (1, 1), generator=g), torch.tensor([pos])))
    return steps


@fixture
def fx_tiny_llama_q4():
    return dict(llama_args=[], steps=_llama_steps(),
                notes="ExecuTorch llama export: dim 64, 2 layers, 4 heads, 2 kv heads, "
                      "vocab 128, 4-bit groupwise (32) linears, KV cache + "
                      "sdpa_with_kv_cache, dynamic S (max 8), context 16; steps: prefill "
                      "5 tokens @0 then 4 decode steps; outputs are last-token logits")


@fixture
def fx_tiny_llama_q4_emb4():
    return dict(llama_args=["-E", "4,32"], steps=_llama_steps(),
                notes="as tiny_llama_q4 plus 4-bit groupwise (32) embedding")


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
            print(f"   ops: {manifest[name].get('ops', manifest[name].get('expect_error'))}"
                  f"  ({manifest[name]['pte_bytes']} bytes)")
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
