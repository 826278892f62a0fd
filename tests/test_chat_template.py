"""Chat templates: SmolLM2's real Jinja template, the tiny model's, and the ChatML fallback."""
import os

import pytest

from py_engine.chat_template import ChatTemplate, ChatTemplateError, render_chat, render_chatml
from py_engine.loaders.gguf import read_gguf
from py_engine.testing.tiny_gguf import make_tiny_llama_gguf
from py_engine.tokenizer import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
SMOL_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


@pytest.fixture(scope="module")
def smol():
    if not os.path.exists(MODEL):
        pytest.fail(f"{MODEL} is missing: run scripts/fetch_model.sh first")
    with open(MODEL, "rb") as f:
        g = read_gguf(f.read())
    tok = Tokenizer.from_gguf(g)
    return ChatTemplate.from_gguf(g, tok), tok


def test_smollm2_template_adds_default_system_prompt(smol):
    tpl, _ = smol
    assert not tpl.is_fallback and tpl.bos_token == "<|im_start|>" and tpl.eos_token == "<|im_end|>"
    out = tpl.render([{"role": "user", "content": "Hi!"}])
    assert out == SMOL_SYSTEM + "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    assert tpl.render([{"role": "user", "content": "Hi!"}], add_generation_prompt=False).endswith("Hi!<|im_end|>\n")


def test_smollm2_template_with_system_and_multi_turn(smol):
    tpl, tok = smol
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"}, {"role": "user", "content": "3+3?"}]
    out = tpl.render(msgs)
    assert out == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                   "<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\n3+3?<|im_end|>\n<|im_start|>assistant\n")
    assert out == render_chatml(msgs)  # SmolLM2's template is ChatML once a system message is given
    ids = tok.encode(out)
    assert ids.count(tok.vocab["<|im_start|>"]) == 5 and ids.count(tok.eos_id) == 4


def test_fallback_is_chatml_without_jinja():
    tpl = ChatTemplate(None)
    assert tpl.is_fallback
    assert tpl.render([{"role": "user", "content": "a"}]) == "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n"
    assert render_chat([{"role": "user", "content": "a"}], None, add_generation_prompt=False) == \
        "<|im_start|>user\na<|im_end|>\n"


def test_tiny_model_template_matches_chatml():
    g = read_gguf(make_tiny_llama_gguf(seed=0))
    tpl = ChatTemplate.from_gguf(g, Tokenizer.from_gguf(g))
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert not tpl.is_fallback and tpl.render(msgs) == render_chatml(msgs)


def test_raise_exception_bos_and_hf_conventions():
    src = ("{{ bos_token }}{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}"
           "{% for m in messages %}\n  {{ m['content'] | tojson }}\n{% endfor %}{{ eos_token }}")
    tpl = ChatTemplate(src, bos_token="<s>", eos_token="</s>")
    # trim_blocks/lstrip_blocks: the block tags' own newline and indentation vanish
    assert tpl.render([{"role": "user", "content": "héllo"}]) == '<s>  "héllo"\n</s>'
    with pytest.raises(ChatTemplateError, match="chat template: first must be user"):
        tpl.render([{"role": "assistant", "content": "x"}])


def test_strftime_now_gives_todays_date_as_llama_3_templates_ask():
    import datetime

    tpl = ChatTemplate('{% if strftime_now is defined %}{{ strftime_now("%d %b %Y") }}{% endif %}|{{ messages[0].content }}')
    before = datetime.datetime.now().strftime("%d %b %Y")
    text = tpl.render([{"role": "user", "content": "x"}])
    assert text in (f"{before}|x", f"{datetime.datetime.now().strftime('%d %b %Y')}|x"), text


def test_sandbox_and_bad_templates_are_clear_errors():
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ChatTemplate("{% for %}")
    evil = ChatTemplate("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ChatTemplateError, match="unsafe|rendering failed"):
        evil.render([{"role": "user", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="message 0 must be a dict with 'role' and 'content'"):
        render_chatml([{"role": "user"}])


def test_without_jinja2_a_chatml_template_falls_back_and_says_so(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 -> ImportError
    monkeypatch.setitem(sys.modules, "jinja2.sandbox", None)
    tpl = ChatTemplate("{{ '<|im_start|>' }}{% for m in messages %}{% endfor %}")
    assert tpl.is_fallback and "jinja2 is not installed" in tpl.fallback_reason
    assert tpl.render([{"role": "user", "content": "a"}]) == render_chatml([{"role": "user", "content": "a"}])
    with pytest.raises(ChatTemplateError, match="jinja2 is not installed and the template is not ChatML"):
        ChatTemplate("[INST] {{ messages[0]['content'] }} [/INST]")
