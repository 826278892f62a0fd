"""Engine behaviour on the tiny llama (native backend): streaming, stops, abort, seeds, context policy."""
import asyncio

import pytest

from py_engine.engine import Engine
from py_engine.generate import ContextFullError
from py_engine.testing.tiny_gguf import make_tiny_llama_gguf


@pytest.fixture(scope="module")
def engine(native_backend):
    eng = asyncio.run(Engine.load(make_tiny_llama_gguf(seed=0), backend=native_backend, context=96, max_prefill=32))
    yield eng
    eng.close()


def collect(agen):
    async def run():
        return [p async for p in agen]
    return asyncio.run(run())


def test_streams_pieces_and_stops_at_max_tokens(engine):
    pieces = collect(engine.generate("Hello world", max_tokens=7, temperature=0))
    s = engine.last_stats
    assert s.finish_reason in ("length", "stop")
    assert s.generated_tokens <= 7
    assert "".join(pieces) == engine.tokenizer.decode(s.token_ids, skip_special=True)


def test_stats_split_the_first_token_from_the_decode(engine, monkeypatch):
    """Prefill time ends with the first token, read back alone (not with the decode steps after
    it); the decode rate counts the tokens that came after it, a stop token included. With
    the native CPU adapter's steps slowed to >= 20 ms each, the rate cannot pass 50 tokens/s."""
    import time

    from py_engine import token_stream

    starts = []
    real_start = token_stream.TokenStream.start

    async def start(self, ids):
        out = await real_start(self, ids)
        starts.append([(g.count, g.mapping) for g in self._groups])
        return out

    real_submit = token_stream.TokenStream._submit_step

    def slow_submit(self):
        time.sleep(0.02)
        real_submit(self)

    monkeypatch.setattr(token_stream.TokenStream, "start", start)
    monkeypatch.setattr(token_stream.TokenStream, "_submit_step", slow_submit)
    monkeypatch.setattr(engine.backend, "is_cpu", False)  # the GPU-fed stream (CPU adapters sample on the host)
    collect(engine.generate("Hello world", max_tokens=8, temperature=0))
    s = engine.last_stats
    assert starts == [[(1, True)]], starts  # token 1's buffer: one token, mapped at once
    steps = s.generated_tokens - 1 + (s.finish_reason == "stop")
    assert s.decode_steps == steps, (s.decode_steps, steps, s.finish_reason)
    assert 0 < s.decode_tokens_per_s <= 50, s.decode_tokens_per_s


def test_same_seed_same_text_other_seed_differs(engine):
    a = "".join(collect(engine.generate("The dog", max_tokens=12, temperature=1.5, top_k=0, top_p=1.0, seed=7)))
    b = "".join(collect(engine.generate("The dog", max_tokens=12, temperature=1.5, top_k=0, top_p=1.0, seed=7)))
    texts = {"".join(collect(engine.generate("The dog", max_tokens=12, temperature=1.5, top_k=0, top_p=1.0,
                                             seed=s))) for s in range(4)}
    assert a == b
    assert len(texts) > 1, texts


def test_top_k_one_equals_greedy(engine):
    greedy = collect(engine.generate("The fox", max_tokens=8, temperature=0))
    top1 = collect(engine.generate("The fox", max_tokens=8, temperature=0.8, top_k=1))
    assert "".join(greedy) == "".join(top1)


def test_stop_string_cuts_the_text(engine):
    full = "".join(collect(engine.generate("Hello", max_tokens=10, temperature=0)))
    assert len(full) >= 4, full
    stop = full[2:4]
    cut = "".join(collect(engine.generate("Hello", max_tokens=10, temperature=0, stop=(stop,))))
    assert cut == full[: full.index(stop)]
    assert engine.last_stats.finish_reason == "stop"


def test_abort_between_steps(engine):
    async def run():
        out = []
        async for piece in engine.generate("Hello", max_tokens=20, temperature=0):
            out.append(piece)
            engine.abort()
        return out
    asyncio.run(run())
    assert engine.last_stats.finish_reason == "abort"
    assert engine.last_stats.generated_tokens <= 2


def test_context_full_drops_oldest_turns(engine):
    long = "The quick brown fox jumps over the lazy dog. " * 2
    msgs = []
    for i in range(4):
        msgs += [{"role": "user", "content": f"{i} {long}"}, {"role": "assistant", "content": long}]
    msgs.append({"role": "user", "content": "What is two plus two?"})
    assert len(engine.tokenizer.encode(engine.template.render(msgs))) > engine.context
    collect(engine.chat(msgs, max_tokens=4, temperature=0))
    # Whole oldest turns were dropped until the prompt plus max_tokens fit; the reply ran.
    assert len(engine.cached_ids) + 4 <= engine.context + 1
    assert engine.last_stats.finish_reason in ("length", "stop")


def test_a_single_message_longer_than_the_context_is_an_error(engine):
    with pytest.raises(ContextFullError, match="KV cache holds 96"):
        collect(engine.chat([{"role": "user", "content": "word " * 200}], max_tokens=4))
    # The engine still works afterwards.
    collect(engine.generate("Hello", max_tokens=2, temperature=0))
    assert engine.last_stats.finish_reason in ("length", "stop")


def test_a_loaded_model_keeps_no_copy_of_its_weights(engine):
    # Engine.build released them once the GPU held them (Pyodide's 4 GiB is shared with the next
    # load): none is left in the program, and reading one says why.
    from py_engine.program import ProgramError

    program = engine.lp.program
    assert program.constants and all(c is None for c in program.constants)
    weight = next(vid for vid, v in enumerate(program.values) if getattr(v, "constant_id", -1) >= 0)
    with pytest.raises(ProgramError, match="released once its graph held it"):
        program.constant_bytes(weight)
    assert not hasattr(engine, "gguf")  # nor the file they came from
    collect(engine.generate("Hi", max_tokens=2, temperature=0))  # and it still runs
    assert engine.last_stats.generated_tokens >= 1


def test_transcoded_weights_are_made_once_each_at_the_upload(native_backend):
    """A K-quant model: Engine.prepare holds no transcoded weight (only the norms, BF16 vectors,
    are converted then), Engine.build makes each weight once as the graph uploads it, the tied
    Q6_K embedding (read by the embedding and the output head) included; the model then runs."""
    from py_engine.loaders.gguf_transcode import TRANSCODED_BLOCKS
    from py_engine.loaders.gguf import read_gguf
    from py_engine.program import LazyBytes
    from py_engine.testing.tiny_gguf import make_tiny_transcoded_gguf

    data = make_tiny_transcoded_gguf(seed=0)
    g = read_gguf(data)
    vectors = sum(t.ggml_type in TRANSCODED_BLOCKS and len(t.dims) == 1 for t in g.tensors.values())
    matrices = sum(t.ggml_type in TRANSCODED_BLOCKS and len(t.dims) == 2 for t in g.tensors.values())
    assert vectors and matrices
    events = []
    on_progress = lambda stage, **info: events.append((stage, info))  # noqa: E731
    prepared = asyncio.run(Engine.prepare(data, backend=native_backend, context=64, max_prefill=16,
                                          on_progress=on_progress))
    at_prepare = [e for e in events if e[0] == "transcode"]
    assert len(at_prepare) == vectors
    assert any(isinstance(c, LazyBytes) for c in prepared.lp.program.constants)
    eng = asyncio.run(Engine.build(prepared, on_progress))
    try:
        made = [info for stage, info in events if stage == "transcode"]
        assert len(made) == vectors + matrices  # the tied embedding once: its readers share one buffer
        assert made[-1] == {"done": vectors + matrices, "total": vectors + matrices}
        collect(eng.generate("Hi", max_tokens=2, temperature=0))
        assert eng.last_stats.generated_tokens >= 1
    finally:
        eng.close()


class _HeldElsewhere:
    """A model file read a range at a time, as the page's worker reads the one JS holds."""

    def __init__(self, data: bytes):
        self.data, self.reads, self.size = data, [], len(data)

    def read(self, start, n):
        self.reads.append((start, n))
        return memoryview(self.data)[start:start + n]


def test_a_file_held_elsewhere_is_read_a_tensor_at_a_time_and_runs_the_same(engine, native_backend):
    """Engine.prepare of such a file reads its header and the norms' vectors, no weight matrix;
    Engine.build reads each of those as it uploads it; the model answers as the one loaded from
    bytes (the module's engine) does."""
    from py_engine.loaders.gguf import read_gguf

    data = make_tiny_llama_gguf(seed=0)
    g = read_gguf(data)
    ranges = {(g.data_offset + t.offset, t.nbytes): t for t in g.tensors.values()}
    source = _HeldElsewhere(data)
    prepared = asyncio.run(Engine.prepare(source, backend=native_backend, context=96, max_prefill=32))
    at_prepare = {ranges[r].name for r in source.reads if r in ranges}
    assert at_prepare and all(len(g.tensors[n].dims) == 1 for n in at_prepare), at_prepare
    other = asyncio.run(Engine.build(prepared))
    try:
        matrices = {t.name for t in g.tensors.values() if len(t.dims) == 2}
        assert matrices <= {ranges[r].name for r in source.reads if r in ranges}
        want = "".join(collect(engine.generate("Hello there", max_tokens=6, temperature=0)))
        got = "".join(collect(other.generate("Hello there", max_tokens=6, temperature=0)))
        assert got == want and got
    finally:
        other.close()


def test_the_file_is_let_go_when_the_model_is_built(native_backend):
    """Nothing reaches a file held elsewhere once Engine.build returns, reference cycles included
    (it collects them): in the browser JS can free its copy before the next model's arrives."""
    import gc
    import weakref

    from py_engine.testing.tiny_gguf import make_tiny_transcoded_gguf

    source = _HeldElsewhere(make_tiny_transcoded_gguf(seed=0))  # its lazy transcodes reach the builder
    gone = weakref.ref(source)
    prepared = asyncio.run(Engine.prepare(source, backend=native_backend, context=64, max_prefill=16))
    del source
    gc.disable()
    try:
        eng = asyncio.run(Engine.build(prepared))
        del prepared
        assert gone() is None
    finally:
        gc.enable()
    eng.close()
