"""Tokenizers read from GGUF metadata: byte-level BPE ("gpt2") and SentencePiece BPE ("llama").

Pure Python (re, unicodedata, codecs): runs in CPython and in Pyodide.

- gpt2: text is split by the pre-tokenizer regexes chosen from `tokenizer.ggml.pre`, each
  piece is mapped byte -> printable unicode char (GPT-2's byte map) and merged with the
  ranked `tokenizer.ggml.merges`. Matches Hugging Face `tokenizers` id for id.
- llama: spaces become U+2581, the text is merged greedily by token score (highest first,
  leftmost on ties), pieces missing from the vocab fall back to <0xNN> byte tokens.
Control tokens (type 3) are matched as whole units when parse_special=True; user-defined
tokens (type 4) always are (as llama.cpp and HF do).
"""
from __future__ import annotations

import codecs
import heapq
import re
import unicodedata
from functools import lru_cache

# token types (llama.cpp's llama_token_type)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

SPM_SPACE = "\u2581"


class TokenizerError(ValueError):
    """Tokenizer metadata that is missing or inconsistent."""


# --- Unicode classes for the pre-tokenizer regexes --------------------------------------------
# Python's `re` has no \p{L}/\p{N}; we build them from unicodedata once, on first use.
# Every letter/number lies below U+40000 (planes 4-13 are unassigned, 14 holds only format
# and mark characters, 15-16 private use), so scanning that far is exact and ~4x cheaper.
_SCAN_LIMIT = 0x40000

# Unicode White_Space (what Oniguruma/Rust regex call \s); Python's \s adds U+001C..U+001F.
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _ranges_to_class(cps: list) -> str:
    out = []
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        a, b = cps[i], cps[j]
        out.append(_esc(a) if a == b else f"{_esc(a)}-{_esc(b)}")
        i = j + 1
    return "".join(out)


def _esc(cp: int) -> str:
    return f"\\U{cp:08x}"


@lru_cache(maxsize=None)
def unicode_classes() -> dict:
    """{'L': ..., 'N': ..., 'WS': ...} bodies of regex character classes (no brackets)."""
    cat = unicodedata.category
    letters, numbers = [], []
    for cp in range(_SCAN_LIMIT):
        c = cat(chr(cp))[0]
        if c == "L":
            letters.append(cp)
        elif c == "N":
            numbers.append(cp)
    return {"L": _ranges_to_class(letters), "N": _ranges_to_class(numbers), "WS": _WHITESPACE}


# Pre-tokenizer patterns with \p{L}, \p{N}, \s written as {L}, {N}, {WS}; each entry is a
# list applied in sequence (each regex splits the pieces of the previous one).
_GPT2 = (r"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{WS}{L}{N}]+|[{WS}]+(?![^{WS}])|[{WS}]+")
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n{L}{N}]?[{L}]+|[{N}]{{1,3}}| ?[^{WS}{L}{N}]+[\r\n]*"
           r"|[{WS}]*[\r\n]+|[{WS}]+(?![^{WS}])|[{WS}]+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n{L}{N}]?[{L}]+|[{N}]| ?[^{WS}{L}{N}]+[\r\n]*"
          r"|[{WS}]*[\r\n]+|[{WS}]+(?![^{WS}])|[{WS}]+")
_DIGIT = r"[{N}]"

PRE_TOKENIZERS = {
    "default": (_GPT2,),
    "gpt2": (_GPT2,),
    "gpt-2": (_GPT2,),
    # digits split one by one first (HF: Digits(individual_digits) then ByteLevel)
    "smollm": (_DIGIT, _GPT2),
    "starcoder": (_DIGIT, _GPT2),
    "refact": (_DIGIT, _GPT2),
    "llama-bpe": (_LLAMA3,),
    "llama3": (_LLAMA3,),
    "qwen2": (_QWEN2,),
}


@lru_cache(maxsize=None)
def _compiled_pre(pre: str) -> tuple:
    cls = unicode_classes()
    # str.format would trip on regex braces, so substitute the three names by hand
    return tuple(re.compile(p.replace("{{1,3}}", "{1,3}").replace("{L}", cls["L"])
                            .replace("{N}", cls["N"]).replace("{WS}", cls["WS"]))
                 for p in PRE_TOKENIZERS[pre])


def _split(pattern: re.Pattern, pieces: list) -> list:
    """Split each piece into regex matches, keeping any unmatched gaps as pieces too."""
    out = []
    for piece in pieces:
        pos = 0
        for m in pattern.finditer(piece):
            if m.start() > pos:
                out.append(piece[pos:m.start()])
            out.append(m.group())
            pos = m.end()
        if pos < len(piece):
            out.append(piece[pos:])
    return out


@lru_cache(maxsize=None)
def byte_to_unicode() -> tuple:
    """GPT-2's reversible byte -> printable char map, as a 256-tuple of chars."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


@lru_cache(maxsize=None)
def unicode_to_byte() -> dict:
    return {c: b for b, c in enumerate(byte_to_unicode())}


# --- the tokenizer ---------------------------------------------------------------------------
class Tokenizer:
    def __init__(self, *, model: str, tokens: list, token_types: list | None = None,
                 merges: list | None = None, scores: list | None = None, pre: str = "default",
                 bos_id: int | None = None, eos_id: int | None = None, eot_id: int | None = None,
                 unk_id: int | None = None, pad_id: int | None = None,
                 add_bos: bool | None = None, add_space_prefix: bool | None = None):
        if model not in ("gpt2", "llama"):
            raise TokenizerError(f"tokenizer: unsupported tokenizer.ggml.model '{model}' (supported: gpt2, llama)")
        if not tokens:
            raise TokenizerError("tokenizer: empty vocabulary (tokenizer.ggml.tokens)")
        n = len(tokens)
        self.model = model
        self.tokens = tokens
        self.token_types = list(token_types) if token_types is not None else [TOKEN_NORMAL] * n
        if len(self.token_types) != n:
            raise TokenizerError(f"tokenizer: {len(self.token_types)} token types for {n} tokens")
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.pre = pre if pre in PRE_TOKENIZERS else "default"
        self.pre_name = pre
        for name, v in (("bos", bos_id), ("eos", eos_id), ("eot", eot_id), ("unknown", unk_id), ("padding", pad_id)):
            if v is not None and not 0 <= v < n:
                raise TokenizerError(f"tokenizer: {name} token id {v} outside the vocabulary of {n}")
        self.bos_id, self.eos_id, self.unk_id, self.pad_id = bos_id, eos_id, unk_id, pad_id
        self.eot_id = eot_id if eot_id is not None else self._guess_eot()
        self.add_bos = (model == "llama") if add_bos is None else bool(add_bos)
        self.add_space_prefix = (model == "llama") if add_space_prefix is None else bool(add_space_prefix)
        self._bytes_cache: dict = {}
        self._word_cache: dict = {}

        if model == "gpt2":
            if not merges:
                raise TokenizerError("tokenizer: gpt2 (byte-level BPE) tokenizer has no merges "
                                     "(tokenizer.ggml.merges missing or empty)")
            self.ranks = {}
            for rank, m in enumerate(merges):
                a, sep, b = m.partition(" ")
                if not sep or not a or not b:
                    raise TokenizerError(f"tokenizer: merge {rank} {m!r} is not 'left right'")
                self.ranks.setdefault((a, b), rank)
            b2u = byte_to_unicode()
            self._byte_ids = [self.vocab.get(c) for c in b2u]
        else:
            if scores is None or len(scores) != n:
                raise TokenizerError("tokenizer: llama (SentencePiece) tokenizer needs one score per token "
                                     "(tokenizer.ggml.scores)")
            self.scores = scores
            self._byte_ids = [self.vocab.get(f"<0x{b:02X}>") for b in range(256)]

        # Whole-unit tokens: control (only with parse_special) and user-defined (always).
        self._special_re = self._unit_regex((TOKEN_CONTROL, TOKEN_USER_DEFINED))
        self._user_re = self._unit_regex((TOKEN_USER_DEFINED,))

    @classmethod
    def from_gguf(cls, gguf) -> "Tokenizer":
        md = gguf.metadata
        model = md.get("tokenizer.ggml.model")
        if model is None:
            raise TokenizerError("tokenizer: metadata key 'tokenizer.ggml.model' is missing")
        tokens = md.get("tokenizer.ggml.tokens")
        if tokens is None:
            raise TokenizerError("tokenizer: metadata key 'tokenizer.ggml.tokens' is missing")
        return cls(
            model=model, tokens=tokens, token_types=md.get("tokenizer.ggml.token_type"),
            merges=md.get("tokenizer.ggml.merges"), scores=md.get("tokenizer.ggml.scores"),
            pre=md.get("tokenizer.ggml.pre", "default"),
            bos_id=md.get("tokenizer.ggml.bos_token_id"), eos_id=md.get("tokenizer.ggml.eos_token_id"),
            eot_id=md.get("tokenizer.ggml.eot_token_id"), unk_id=md.get("tokenizer.ggml.unknown_token_id"),
            pad_id=md.get("tokenizer.ggml.padding_token_id"),
            add_bos=md.get("tokenizer.ggml.add_bos_token"),
            add_space_prefix=md.get("tokenizer.ggml.add_space_prefix"),
        )

    # -- properties ---------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        return len(self.tokens)

    @property
    def stop_ids(self) -> frozenset:
        """Ids that end a generated turn (EOS and end-of-turn)."""
        return frozenset(i for i in (self.eos_id, self.eot_id) if i is not None)

    def _guess_eot(self):
        # llama.cpp's fallback: well-known end-of-turn token texts
        for text in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"):
            i = self.vocab.get(text)
            if i is not None and self.token_types[i] == TOKEN_CONTROL:
                return i
        return None

    def _unit_regex(self, types):
        units = [t for t, ty in zip(self.tokens, self.token_types) if ty in types and t]
        if not units:
            return None
        units.sort(key=len, reverse=True)  # longest first so a prefix never wins
        return re.compile("|".join(map(re.escape, units)))

    # -- encode -------------------------------------------------------------------------------
    def encode(self, text: str, add_bos: bool | None = None, parse_special: bool = True) -> list:
        add_bos = self.add_bos if add_bos is None else add_bos
        ids = []
        if add_bos:
            if self.bos_id is None:
                raise TokenizerError("tokenizer: add_bos requested but the model has no BOS token")
            ids.append(self.bos_id)
        unit_re = self._special_re if parse_special else self._user_re
        prev_special = True  # SPM: a fragment at the start or after a special token gets "▁"
        for is_unit, frag in self._fragments(text, unit_re):
            if is_unit:
                ids.append(self.vocab[frag])
                prev_special = True
            elif self.model == "gpt2":
                self._encode_bpe(frag, ids)
            else:
                if self.add_space_prefix and prev_special:
                    frag = " " + frag
                self._encode_spm(frag.replace(" ", SPM_SPACE), ids)
                prev_special = False
        return ids

    @staticmethod
    def _fragments(text: str, unit_re):
        if unit_re is None:
            if text:
                yield False, text
            return
        pos = 0
        for m in unit_re.finditer(text):
            if m.start() > pos:
                yield False, text[pos:m.start()]
            yield True, m.group()
            pos = m.end()
        if pos < len(text):
            yield False, text[pos:]

    def pre_tokenize(self, text: str) -> list:
        pieces = [text]
        for pattern in _compiled_pre(self.pre):
            pieces = _split(pattern, pieces)
        return pieces

    def _encode_bpe(self, text: str, out: list) -> None:
        b2u = byte_to_unicode()
        cache = self._word_cache
        for piece in self.pre_tokenize(text):
            word = "".join([b2u[b] for b in piece.encode("utf-8")])
            ids = cache.get(word)
            if ids is None:
                ids = self._bpe_word(word)
                if len(cache) < 100_000:
                    cache[word] = ids
            out.extend(ids)

    def _bpe_word(self, word: str) -> list:
        ranks = self.ranks
        parts = list(word)
        while len(parts) > 1:
            best_rank, best = None, -1
            for i in range(len(parts) - 1):
                r = ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best_rank, best = r, i
            if best < 0:
                break
            a, b = parts[best], parts[best + 1]
            merged, i, n = [], 0, len(parts)
            while i < n:  # merge every occurrence of the best pair, left to right
                if i < n - 1 and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = []
        for p in parts:
            i = self.vocab.get(p)
            if i is not None:
                ids.append(i)
                continue
            # Not in vocab: fall back to single byte symbols. Bytes the vocabulary lacks
            # (SmolLM2 has no token for 0x04, 0x1d, 0xf5.. etc.) are dropped, as HF's BPE
            # does; mapping them to the "unknown" id would inject <|endoftext|> into text.
            for ch in p:
                j = self.vocab.get(ch)
                if j is not None:
                    ids.append(j)
        return ids

    def _encode_spm(self, text: str, out: list) -> None:
        if not text:
            return
        vocab, scores = self.vocab, self.scores
        sym = list(text)                  # symbol texts; "" once merged away
        nxt = list(range(1, len(sym) + 1))
        prv = list(range(-1, len(sym) - 1))
        heap = []
        rev_merge = {}

        def push(left, right):
            if left < 0 or right >= len(sym):
                return
            s = sym[left] + sym[right]
            tid = vocab.get(s)
            if tid is not None:
                # highest score first, then leftmost
                heapq.heappush(heap, (-scores[tid], left, right, len(s)))
                rev_merge[s] = (sym[left], sym[right])

        for i in range(len(sym) - 1):
            push(i, i + 1)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            if not sym[left] or not sym[right] or nxt[left] != right or len(sym[left]) + len(sym[right]) != size:
                continue  # stale entry
            sym[left] += sym[right]
            sym[right] = ""
            nxt[left] = nxt[right]
            if nxt[right] < len(sym):
                prv[nxt[right]] = left
            push(prv[left], left)
            push(left, nxt[left])
        i = 0
        while i < len(sym):
            self._spm_resegment(sym[i], rev_merge, out)
            i = nxt[i]

    def _spm_resegment(self, s: str, rev_merge: dict, out: list) -> None:
        tid = self.vocab.get(s)
        if tid is not None:
            out.append(tid)
            return
        pair = rev_merge.get(s)
        if pair is not None:
            self._spm_resegment(pair[0], rev_merge, out)
            self._spm_resegment(pair[1], rev_merge, out)
            return
        for b in s.encode("utf-8"):  # byte fallback
            bid = self._byte_ids[b]
            if bid is None:
                bid = self.unk_id
            if bid is None:
                raise TokenizerError(f"tokenizer: no byte token <0x{b:02X}> and no unknown token")
            out.append(bid)

    # -- decode -------------------------------------------------------------------------------
    def token_bytes(self, tid: int, skip_special: bool = False) -> bytes:
        """The bytes one token stands for (control tokens: their text, or b'' if skipped)."""
        if not 0 <= tid < len(self.tokens):
            raise TokenizerError(f"tokenizer: token id {tid} outside the vocabulary of {len(self.tokens)}")
        ty = self.token_types[tid]
        if ty == TOKEN_CONTROL or ty == TOKEN_UNUSED:
            return b"" if skip_special or ty == TOKEN_UNUSED else self.tokens[tid].encode("utf-8")
        b = self._bytes_cache.get(tid)
        if b is None:
            b = self._bytes_cache[tid] = self._token_bytes(tid, ty)
        return b

    def _token_bytes(self, tid: int, ty: int) -> bytes:
        text = self.tokens[tid]
        if ty == TOKEN_USER_DEFINED:
            return text.encode("utf-8")
        if self.model == "gpt2":
            u2b = unicode_to_byte()
            out = bytearray()
            for ch in text:
                b = u2b.get(ch)
                if b is None:
                    out += ch.encode("utf-8")
                else:
                    out.append(b)
            return bytes(out)
        if ty == TOKEN_BYTE and len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            return bytes([int(text[3:5], 16)])
        return text.replace(SPM_SPACE, " ").encode("utf-8")

    def decode(self, ids, skip_special: bool = False) -> str:
        d = StreamDecoder(self, skip_special=skip_special)
        return "".join(d.push(i) for i in ids) + d.flush()


class StreamDecoder:
    """Turns token ids into text one at a time; never emits a broken UTF-8 sequence
    (partial bytes are held until the next token completes them, or flush())."""

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = False):
        self.tok = tokenizer
        self.skip_special = skip_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # SentencePiece: the space added before the first word is not part of the text.
        self._strip_first_space = tokenizer.model == "llama" and tokenizer.add_space_prefix

    def push(self, tid: int) -> str:
        tok = self.tok
        b = tok.token_bytes(tid, self.skip_special)
        if self._strip_first_space and tok.token_types[tid] != TOKEN_CONTROL:
            self._strip_first_space = False
            if b.startswith(b" "):
                b = b[1:]
        return self._utf8.decode(b)

    def flush(self) -> str:
        """Emit whatever is held (incomplete sequences become U+FFFD) and reset."""
        return self._utf8.decode(b"", final=True)
