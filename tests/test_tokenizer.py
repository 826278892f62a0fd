"""Tokenizers from GGUF metadata, checked id-for-id against Hugging Face `tokenizers`
(built from the same vocab + merges) on SmolLM2's real vocabulary and on the tiny model's."""
import os
import random
import subprocess
import sys
import time

import pytest

from py_engine.loaders.gguf import read_gguf
from py_engine.testing.tiny_gguf import make_tiny_llama_gguf
from py_engine.tokenizer import (TOKEN_BYTE, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_USER_DEFINED, StreamDecoder,
                                 Tokenizer, TokenizerError, unicode_classes)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

CORPUS = [
    "Hello world", "Hello, World! How are you?", "  two  spaces   three\n\n\nnewlines\t\ttabs \n ",
    "trailing spaces   ", "   leading", "\n", "\n\n \n", "x\r\ny\r\n", "a" * 60, "    ",
    "12345 3.14159 1,000,000 x2y3 0x1F 2024-11-22", "١٢٣ ٤ Ⅻ ½ ² ③",
    "def f(x):\n    return x**2  # square\n\nclass A:\n\tpass\n", "for(i=0;i<n;i++){a[i]+=b[i]*2;}",
    "café naïve résumé Ångström Ǆ ﬁ", "Ελληνικά русский עברית العربية हिन्दी",
    "日本語のテキスト 中文字符 한국어", "emoji 😀👍🏽 🇫🇷 👨‍👩‍👧 ❤️", "I'm you're we've they'll it's I'd 'S 'T",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>", "a<|im_end|>b<|im_start|>",
    "\x1c\x1d unit sep \u00a0nbsp \u2003em \u3000ideo \u200bzw", "Ω≈ç√∫˜µ≤≥÷", "", " ", "'", "'''", "...!!!???",
    "https://example.com/path?q=1&b=2#frag", "\u0301 combining\u0301 e\u0301",
]


def _random_strings(n, seed=0):
    rnd = random.Random(seed)
    alphabet = list("abcXYZ 019'\n\t\r.,!?-_()[]{}<>\"") + list("éüßñ日本語한😀👍\u00a0\u2003\u3000٣½Ⅻ") + \
        ["  ", "\n\n", "'s", "'ll", "<|im_end|>", "<|endoftext|>"]
    return ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40))) for _ in range(n)]


def hf_tokenizer(md):
    """HF reference for a GGUF 'gpt2' + 'smollm' tokenizer: BPE(vocab, merges), Digits then
    ByteLevel pre-tokenization, control tokens as special added tokens."""
    try:
        import tokenizers
        from tokenizers import AddedToken, decoders, models, pre_tokenizers
    except ImportError:
        pytest.fail("the HF `tokenizers` package is missing: .venv/bin/pip install -r scripts/requirements.txt")
    assert md["tokenizer.ggml.pre"] == "smollm"
    tokens = md["tokenizer.ggml.tokens"]
    hf = tokenizers.Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)},
                                         [tuple(m.split(" ", 1)) for m in md["tokenizer.ggml.merges"]]))
    hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False)
                           for t, ty in zip(tokens, md["tokenizer.ggml.token_type"]) if ty == TOKEN_CONTROL])
    return hf


@pytest.fixture(scope="module")
def smol():
    if not os.path.exists(MODEL):
        pytest.fail(f"{MODEL} is missing: run scripts/fetch_model.sh first")
    with open(MODEL, "rb") as f:
        g = read_gguf(f.read())
    t0 = time.perf_counter()
    tok = Tokenizer.from_gguf(g)
    return g, tok, time.perf_counter() - t0


@pytest.fixture(scope="module")
def tiny():
    g = read_gguf(make_tiny_llama_gguf(seed=0))
    return g, Tokenizer.from_gguf(g)


# --- SmolLM2 (real vocabulary) -------------------------------------------------------------
def test_smollm2_loads_fast_with_metadata_ids(smol):
    g, tok, load_s = smol
    assert load_s < 2.0, f"tokenizer load took {load_s:.2f} s"
    assert tok.n_vocab == 49152 and tok.model == "gpt2" and tok.pre == "smollm"
    assert (tok.bos_id, tok.eos_id) == (1, 2) and tok.tokens[2] == "<|im_end|>"
    assert tok.eot_id == 2 and tok.stop_ids == {2}
    assert tok.add_bos is False
    assert tok.encode("hi", add_bos=True)[0] == 1 and tok.encode("hi")[0] != 1


def test_smollm2_matches_hf_tokenizers_on_corpus(smol):
    g, tok, _ = smol
    hf = hf_tokenizer(g.metadata)
    for text in CORPUS:
        assert tok.encode(text, add_bos=False) == hf.encode(text, add_special_tokens=False).ids, repr(text)


def test_smollm2_matches_hf_tokenizers_on_random_strings(smol):
    g, tok, _ = smol
    hf = hf_tokenizer(g.metadata)
    mismatches = [s for s in _random_strings(600) if tok.encode(s) != hf.encode(s, add_special_tokens=False).ids]
    assert mismatches == []


def test_smollm2_known_ids(smol):
    _, tok, _ = smol
    # Digits split one by one; ChatML markers are single control tokens.
    ids = tok.encode("<|im_start|>user\n123<|im_end|>")
    assert ids[0] == 1 and ids[-1] == 2
    assert [tok.tokens[i] for i in ids[1:-1]] == ["user", "Ċ", "1", "2", "3"]
    # parse_special=False: the markers are plain text
    plain = tok.encode("<|im_start|>", parse_special=False)
    assert 1 not in plain and tok.decode(plain) == "<|im_start|>"


def test_smollm2_round_trip_and_stream_decoding(smol):
    _, tok, _ = smol
    for text in CORPUS + _random_strings(100, seed=1):
        if "\x1d" in text:  # SmolLM2 has no token for byte 0x1d: it is dropped (as HF does)
            continue
        ids = tok.encode(text)
        assert tok.decode(ids) == text, repr(text)
        dec = StreamDecoder(tok)
        pieces = [dec.push(i) for i in ids] + [dec.flush()]
        assert "".join(pieces) == text
        assert all("\ufffd" not in p for p in pieces)


def test_stream_decoder_holds_partial_utf8(smol):
    _, tok, _ = smol
    # "😀" (4 bytes) as four single-byte tokens: nothing appears until the last one.
    from py_engine.tokenizer import byte_to_unicode
    ids = [tok.vocab[byte_to_unicode()[b]] for b in "😀".encode()]
    dec = StreamDecoder(tok)
    assert [dec.push(i) for i in ids] == ["", "", "", "😀"]
    dec.push(ids[0])
    assert dec.flush() == "\ufffd"  # a dangling lead byte is reported only at the end
    assert tok.decode([1, 2], skip_special=True) == "" and tok.decode([1]) == "<|im_start|>"


def test_smollm2_bulk_encode_speed(smol):
    _, tok, _ = smol
    text = " ".join(CORPUS) * 20  # ~20 kB, mixed scripts
    t0 = time.perf_counter()
    tok.encode(text)
    assert time.perf_counter() - t0 < 0.5


# --- tiny model vocabulary -----------------------------------------------------------------
def test_tiny_vocab_matches_hf_and_uses_merges(tiny):
    g, tok = tiny
    hf = hf_tokenizer(g.metadata)
    for text in CORPUS + _random_strings(200, seed=2):
        assert tok.encode(text) == hf.encode(text, add_special_tokens=False).ids, repr(text)
    ids = tok.encode("The quick brown fox")
    assert len(ids) < len("The quick brown fox")  # merges were learned and applied
    assert tok.decode(ids) == "The quick brown fox"
    assert tok.encode("<|im_start|>") == [1]


# --- errors and options --------------------------------------------------------------------
def test_gpt2_without_merges_is_a_clear_error(tiny):
    g, _ = tiny
    md = dict(g.metadata)
    del md["tokenizer.ggml.merges"]
    with pytest.raises(TokenizerError, match="no merges"):
        Tokenizer.from_gguf(type("G", (), {"metadata": md})())
    with pytest.raises(TokenizerError, match="unsupported tokenizer.ggml.model 'bert'"):
        Tokenizer(model="bert", tokens=["a"])
    with pytest.raises(TokenizerError, match="'tokenizer.ggml.tokens' is missing"):
        Tokenizer.from_gguf(type("G", (), {"metadata": {"tokenizer.ggml.model": "gpt2"}})())
    with pytest.raises(TokenizerError, match="needs one score per token"):
        Tokenizer(model="llama", tokens=["a", "b"])
    with pytest.raises(TokenizerError, match="eos token id 9 outside"):
        Tokenizer(model="gpt2", tokens=["a"], merges=["a a"], eos_id=9)


def test_user_defined_tokens_always_match_control_only_with_parse_special():
    tokens = ["<ctl>", "<usr>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["<", ">", "ab"]
    types = [TOKEN_CONTROL, TOKEN_USER_DEFINED] + [TOKEN_NORMAL] * (len(tokens) - 2)
    tok = Tokenizer(model="gpt2", tokens=tokens, token_types=types, merges=["a b"])
    assert tok.encode("ab<ctl><usr>") == [tokens.index("ab"), 0, 1]
    no_special = tok.encode("<ctl><usr>", parse_special=False)
    assert 0 not in no_special and no_special[-1] == 1


def test_pre_tokenizer_variants():
    tok = Tokenizer(model="gpt2", tokens=["a"], merges=["a a"], pre="llama-bpe")
    assert tok.pre_tokenize("I'M 12345 hello\n\n  world") == ["I", "'M", " ", "123", "45", " hello", "\n\n", " ", " world"]
    assert Tokenizer(model="gpt2", tokens=["a"], merges=["a a"], pre="qwen2").pre_tokenize("x 123") == ["x", " ", "1", "2", "3"]
    assert Tokenizer(model="gpt2", tokens=["a"], merges=["a a"], pre="gpt2").pre_tokenize("x 123  y") == ["x", " 123", " ", " y"]
    assert Tokenizer(model="gpt2", tokens=["a"], merges=["a a"], pre="smollm").pre_tokenize("x 123") == ["x", " ", "1", "2", "3"]
    # an unknown pre-tokenizer name falls back to GPT-2's pattern
    assert Tokenizer(model="gpt2", tokens=["a"], merges=["a a"], pre="mystery").pre == "default"


def test_unicode_classes():
    import re
    cls = unicode_classes()
    letter, number, space = (re.compile(f"[{cls[k]}]") for k in ("L", "N", "WS"))
    assert all(letter.fullmatch(c) for c in "aZéß日한Ωя") and not letter.match("1")
    assert all(number.fullmatch(c) for c in "09٣½Ⅻ²") and not number.match("一")  # CJK numeral is Lo
    assert all(space.fullmatch(c) for c in " \t\n\r\x0b\x0c\x85\xa0\u2003\u3000") and not space.match("\x1c")


def test_import_is_cheap():
    code = "import time; t = time.perf_counter(); import py_engine.tokenizer; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert float(out.stdout) < 0.5


# --- SentencePiece ("llama") ---------------------------------------------------------------
def spm_tokenizer(**kw):
    pieces = {"▁": -1.0, "h": -2.0, "e": -2.0, "l": -2.0, "o": -2.0, "w": -2.0, "r": -2.0, "d": -2.0,
              "▁h": -1.5, "ll": -1.2, "▁he": -1.0, "llo": -0.9, "▁hello": -0.5, "▁w": -1.6, "or": -1.7,
              "▁wor": -1.1, "▁world": -0.6, "ld": -1.3}
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + list(pieces)
    types = [2, TOKEN_CONTROL, TOKEN_CONTROL] + [TOKEN_BYTE] * 256 + [TOKEN_NORMAL] * len(pieces)
    scores = [0.0] * 259 + list(pieces.values())
    return Tokenizer(model="llama", tokens=tokens, token_types=types, scores=scores,
                     bos_id=1, eos_id=2, unk_id=0, **kw)


def test_spm_merges_by_score_with_space_prefix_and_byte_fallback():
    tok = spm_tokenizer()
    name = lambda ids: [tok.tokens[i] for i in ids]  # noqa: E731
    assert tok.add_bos and tok.add_space_prefix
    assert name(tok.encode("hello world")) == ["<s>", "▁hello", "▁world"]
    assert name(tok.encode("hello", add_bos=False)) == ["▁hello"]
    # é has no piece: its two UTF-8 bytes become byte tokens
    assert name(tok.encode("hé", add_bos=False)) == ["▁h", "<0xC3>", "<0xA9>"]
    # after a control token the next fragment gets the space prefix again
    assert name(tok.encode("hello</s>world", add_bos=False)) == ["▁hello", "</s>", "▁world"]
    for text in ("hello world", "hé wor ld", "hello  world"):
        assert tok.decode(tok.encode(text), skip_special=True) == text
    no_prefix = spm_tokenizer(add_space_prefix=False)
    assert [no_prefix.tokens[i] for i in no_prefix.encode("hello", add_bos=False)] == ["h", "e", "llo"]


# --- Pyodide -------------------------------------------------------------------------------
from pytest_pyodide import run_in_pyodide  # noqa: E402


@run_in_pyodide
def test_gguf_and_tokenizer_run_in_pyodide(selenium):
    import time

    from py_engine.loaders.gguf import read_gguf
    from py_engine.testing.tiny_gguf import make_tiny_llama_gguf
    from py_engine.tokenizer import StreamDecoder, Tokenizer, unicode_classes

    t0 = time.perf_counter()
    unicode_classes()
    classes_s = time.perf_counter() - t0
    g = read_gguf(make_tiny_llama_gguf(seed=0))
    tok = Tokenizer.from_gguf(g)
    text = "<|im_start|>user\nThe quick brown fox 123, café 日本 😀<|im_end|>\n"
    ids = tok.encode(text)
    assert ids[0] == 1 and tok.decode(ids) == text
    dec = StreamDecoder(tok)
    assert "".join(dec.push(i) for i in ids) + dec.flush() == text
    assert g.tensors["blk.0.attn_q.weight"].to_numpy().shape == (64, 64)
    assert classes_s < 2.0, classes_s
    print(f"pyodide: unicode classes built in {classes_s:.3f} s")
