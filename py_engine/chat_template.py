"""Render a conversation into the prompt text the model was trained on.

The template is `tokenizer.chat_template` (Jinja, as Hugging Face ships it), rendered in a
sandboxed environment with HF's conventions (trim_blocks, lstrip_blocks, raise_exception,
strftime_now, tojson). Without a template we fall back to ChatML, written in plain Python so that it
needs no jinja2 at all.
"""
from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache

CHATML_ROLES = ("system", "user", "assistant", "tool")


class ChatTemplateError(ValueError):
    """A template that fails to compile or raises while rendering (raise_exception)."""


def _raise_exception(message):
    raise ChatTemplateError(f"chat template: {message}")


def _strftime_now(fmt: str) -> str:
    """Today's date as the template asks for it (Llama 3.1+ templates put it in the system turn)."""
    return datetime.now().strftime(fmt)


def _tojson(value, indent=None, ensure_ascii=False):
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


@lru_cache(maxsize=8)
def _compile(source: str):
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from jinja2.exceptions import TemplateError
    except ImportError:  # pragma: no cover - jinja2 is a runtime dependency
        raise ChatTemplateError("chat template: jinja2 is not installed") from None
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.filters["tojson"] = _tojson
    try:
        return env.from_string(source)
    except TemplateError as e:
        raise ChatTemplateError(f"chat template: does not compile: {e}") from None


def jinja2_available() -> bool:
    try:
        import jinja2.sandbox  # noqa: F401
    except ImportError:
        return False
    return True


def _check_messages(messages) -> list:
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ChatTemplateError(f"chat template: message {i} must be a dict with 'role' and 'content'")
        out.append(dict(m))
    return out


def render_chatml(messages, add_generation_prompt: bool = True) -> str:
    """ChatML: <|im_start|>role\\ncontent<|im_end|>\\n ... (+ '<|im_start|>assistant\\n')."""
    parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in _check_messages(messages)]
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def render_chat(messages, template: str | None = None, *, add_generation_prompt: bool = True,
                bos_token: str = "", eos_token: str = "", **extra) -> str:
    """Render `messages` ([{'role', 'content'}, ...]) with `template`, or ChatML if None."""
    messages = _check_messages(messages)
    if not template:
        return render_chatml(messages, add_generation_prompt)
    from jinja2.exceptions import TemplateError, SecurityError
    tpl = _compile(template)
    try:
        return tpl.render(messages=messages, add_generation_prompt=add_generation_prompt,
                          bos_token=bos_token, eos_token=eos_token, **extra)
    except ChatTemplateError:
        raise
    except SecurityError as e:
        raise ChatTemplateError(f"chat template: unsafe operation refused by the sandbox: {e}") from None
    except TemplateError as e:
        raise ChatTemplateError(f"chat template: rendering failed: {e}") from None


class ChatTemplate:
    """A model's template plus its BOS/EOS texts, built from GGUF metadata and a Tokenizer."""

    def __init__(self, template: str | None, bos_token: str = "", eos_token: str = ""):
        self.template = template or None
        self.bos_token, self.eos_token = bos_token, eos_token
        self.fallback_reason = None if self.template else "the model has no chat template"
        if self.template and not jinja2_available():
            # The page may run without jinja2; a ChatML model still chats, only template
            # extras (e.g. a default system prompt) are lost, and we say so.
            if "<|im_start|>" not in self.template:
                raise ChatTemplateError("chat template: jinja2 is not installed and the template is not ChatML")
            self.fallback_reason = "jinja2 is not installed; rendering plain ChatML"
            self.template = None
        if self.template:
            _compile(self.template)  # fail at load time, not at the first message

    @classmethod
    def from_gguf(cls, gguf, tokenizer=None) -> "ChatTemplate":
        template = gguf.metadata.get("tokenizer.chat_template")
        bos = eos = ""
        if tokenizer is not None:
            if tokenizer.bos_id is not None:
                bos = tokenizer.tokens[tokenizer.bos_id]
            if tokenizer.eos_id is not None:
                eos = tokenizer.tokens[tokenizer.eos_id]
        return cls(template, bos, eos)

    @property
    def is_fallback(self) -> bool:
        return self.template is None

    def render(self, messages, add_generation_prompt: bool = True, **extra) -> str:
        return render_chat(messages, self.template, add_generation_prompt=add_generation_prompt,
                           bos_token=self.bos_token, eos_token=self.eos_token, **extra)
