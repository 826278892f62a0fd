"""The chat page (web/index.html) in headless Chromium with WebGPU on SwiftShader, on the tiny model.
One page is loaded once for the module and the tests run in file order on it (load, reply,
cache reuse, stop, ...), because each page load costs Pyodide + pipelines (~15 s here). Every
request of the browser context (page and worker) is recorded to check that nothing leaves the
page's origin. Screenshots: test-artifacts/chat-loaded.png, chat-reply.png, chat-no-webgpu.png.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from chat_site import LOAD_TIMEOUT_MS, REPLY_TIMEOUT_MS, TINY, ask, screenshot, site, wait_ready  # noqa: F401
from py_engine.testing.tiny_gguf import make_tiny_llama_gguf, make_tiny_transcoded_gguf

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def context(chromium):
    ctx = chromium.new_context(viewport={"width": 1280, "height": 800})
    ctx.requests = []
    ctx.on("request", lambda r: ctx.requests.append(r.url))
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def chat(context, site):
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(site.base + f"?model=models/{TINY}")
    wait_ready(page)
    yield page
    page.close()


def test_page_loads_with_progress_to_ready(chat, site):
    stages = chat.eval_on_selector_all("#stages li", "els => els.map(e => [e.dataset.stage, e.dataset.state])")
    assert stages == [["runtime", "done"], ["bytes", "done"], ["parse", "done"], ["upload", "done"], ["ready", "done"]]
    assert chat.get_attribute("#progress", "data-source") == "download"
    assert chat.eval_on_selector("#progress", "p => p.value === p.max && p.max > 0")
    assert site.hits(f"/models/{TINY}") == 1
    assert chat.is_enabled("#prompt") and chat.is_hidden("#loader")
    assert TINY in chat.inner_text("#model-name")
    # SwiftShader has no shader-f16: the default KV caches are float32, and the line says nothing of f16.
    assert "tokens of context" in chat.inner_text("#model-name") and "f16" not in chat.inner_text("#model-name")
    assert chat.errors == []
    screenshot(chat, "chat-loaded.png")


def test_message_streams_a_reply_with_tokens_per_s(chat):
    stats = ask(chat, "Hi", max_tokens=10)
    reply = chat.locator(".msg.assistant").last
    assert stats["generated_tokens"] >= 1 and stats["finish_reason"] in ("length", "stop"), stats
    assert reply.get_attribute("data-finish") == stats["finish_reason"]
    # Streamed: several chunks arrived (one per token or so), not one block at the end.
    chunks = int(reply.get_attribute("data-chunks") or 0)
    assert chunks >= 2 or stats["generated_tokens"] < 2, (chunks, stats)
    assert reply.locator(".body").inner_text().strip(), "empty reply"
    assert "tokens/s" in chat.inner_text("#stats")
    assert float(chat.get_attribute("#stats", "data-tps")) > 0
    print(f"tiny model on SwiftShader: {chat.inner_text('#stats')}")
    screenshot(chat, "chat-reply.png")


def test_second_message_reuses_the_kv_cache(chat):
    first = chat.evaluate("window.pyEngineChat.lastStats")
    second = ask(chat, "And you?", max_tokens=4)
    # The second prompt is the whole conversation; the cache already held at least the first prompt,
    # so only the rest (end of the reply as re-tokenized, the new turn) is prefilled.
    whole_prompt = second["cached_tokens"] - second["generated_tokens"]
    assert whole_prompt > first["prefilled_tokens"] + first["generated_tokens"], (first, second)
    assert 0 < second["prefilled_tokens"] <= whole_prompt - first["prefilled_tokens"], (first, second)
    assert int(chat.get_attribute("#stats", "data-prefilled")) == second["prefilled_tokens"]


def test_new_chat_clears_the_conversation(chat):
    chat.click("#new-chat")
    chat.wait_for_function("document.querySelectorAll('.msg').length === 0")
    stats = ask(chat, "Hi", max_tokens=3)
    assert stats["generated_tokens"] >= 1
    assert chat.locator(".msg").count() == 2


def test_stop_ends_the_reply_at_once(chat):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    # Stop as soon as the page is generating. The tiny model's greedy reply to a prompt may end
    # with an end-of-turn token before the click lands (Stop is hidden then): another prompt.
    for prompt in ("Tell me a long story", "Write a poem about the sea", "List many colors"):
        chat.click("#new-chat")
        chat.wait_for_function("document.querySelectorAll('.msg').length === 0")
        ask(chat, prompt, max_tokens=100, wait=False)
        chat.wait_for_selector("#stop", state="visible", timeout=REPLY_TIMEOUT_MS)
        try:
            chat.click("#stop", timeout=5_000)
        except PlaywrightTimeout:
            chat.wait_for_selector(".msg.assistant[data-done=true]", timeout=30_000)
            continue
        break
    else:
        raise AssertionError("every reply ended before Stop could be clicked")
    chat.wait_for_selector(".msg.assistant[data-done=true]", timeout=30_000)
    stats = chat.evaluate("window.pyEngineChat.lastStats")
    assert stats["finish_reason"] == "abort", stats
    assert stats["generated_tokens"] < 100
    assert chat.is_visible("#send") and chat.is_hidden("#stop")
    # The engine is usable after a stop, and the stopped reply stays in the (cached) history.
    after = ask(chat, "ok", max_tokens=2)
    assert after["finish_reason"] in ("length", "stop") and after["prefilled_tokens"] < 20, after


def test_markdown_is_rendered_as_our_elements_only(chat):
    chat.evaluate("""async () => {
        const { renderMarkdown } = await import('./markdown.js');
        const box = document.createElement('div');
        box.id = 'md-test';
        box.append(renderMarkdown('# T\\n**b** <img src=x onerror=alert(1)> `c`\\n\\n```py\\nprint(1) <b>\\n```\\n- one\\n- two'));
        document.body.append(box);
    }""")
    tags = chat.eval_on_selector_all("#md-test *", "els => [...new Set(els.map(e => e.tagName.toLowerCase()))].sort()")
    assert "img" not in tags and "b" not in tags, tags
    assert {"h3", "strong", "code", "pre", "ul", "li", "button"} <= set(tags), tags
    text = chat.inner_text("#md-test")
    assert "<img src=x onerror=alert(1)>" in text and "print(1) <b>" in text
    chat.evaluate("document.getElementById('md-test').remove()")


def test_reload_reads_weights_from_browser_storage(context, site):
    page = context.new_page()
    try:
        page.goto(site.base + f"?model=models/{TINY}")
        wait_ready(page)
        assert page.get_attribute("#progress", "data-source") == "cache"
        assert site.hits(f"/models/{TINY}") == 1, [e for e in site.log if TINY in e[1]]
        assert "stored in this browser" in page.inner_text("#cache-state")
        page.click("#clear-cache")
        page.wait_for_function("document.getElementById('cache-state').textContent.includes('deleted')")
        assert page.evaluate(f"(async () => (await import('./engine.js')).isModelCached('models/{TINY}'))()") is False
    finally:
        page.close()


def test_local_gguf_file_through_the_file_picker(context, site, tmp_path):
    # A K-quant file (Q4_K, Q6_K, ...): the page says which types the load transcoded.
    path = tmp_path / "my-local-model.gguf"
    path.write_bytes(make_tiny_transcoded_gguf(seed=1))
    page = context.new_page()
    try:
        page.goto(site.base + "?autoload=0")
        page.wait_for_selector("#status[data-state=idle]")
        page.set_input_files("#model-file", str(path))
        wait_ready(page)
        assert page.get_attribute("#progress", "data-source") == "read"
        assert "my-local-model.gguf" in page.inner_text("#model-name")
        assert "Q4_K→Q4_1" in page.inner_text("#model-name") and "Q6_K→Q8_0" in page.inner_text("#model-name")
        # transcoded as the weights are uploaded (each made then, never all held twice)
        assert page.get_attribute("#stages li[data-stage=upload]", "data-detail") == \
            "transcoding weights to the GPU's formats: 20 of 20 tensors"
        assert site.hits("my-local-model") == 0  # read in the browser, never uploaded
        stats = ask(page, "Hi", max_tokens=3)
        assert stats["generated_tokens"] >= 1
    finally:
        page.close()


def test_a_local_pte_file_runs_one_step_and_shows_its_outputs(context, site):
    pte = Path(__file__).resolve().parent / "fixtures" / "pte" / "add_mul_sigmoid.pte"
    page = context.new_page()
    try:
        page.goto(site.base + "?autoload=0")
        page.wait_for_selector("#status[data-state=idle]")
        page.set_input_files("#model-file", str(pte))
        page.wait_for_selector("#status[data-state=ready]", timeout=LOAD_TIMEOUT_MS)
        result = page.wait_for_selector("article.pte-result")
        text = result.inner_text()
        assert result.get_attribute("data-outputs") == "1", text
        assert "aten.sigmoid.default" not in text  # ops are counted, not dumped
        assert "output 0: float32" in text and "first values" in text, text
        assert page.is_disabled("#prompt")  # a program is not a chat model
    finally:
        page.close()


def test_a_file_that_is_not_a_model_shows_a_clear_error(context, site, tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_bytes(b"hello, I am not a model")
    page = context.new_page()
    try:
        page.goto(site.base + "?autoload=0")
        page.set_input_files("#model-file", str(path))
        page.wait_for_selector("#status[data-state=error]", timeout=LOAD_TIMEOUT_MS)
        assert page.get_attribute("#problem", "data-kind") == "unsupported-model"
        assert "not a model file" in page.text_content("#problem-detail")  # inside a closed <details>
    finally:
        page.close()


def test_a_bad_model_file_keeps_the_loaded_model_and_conversation(chat, tmp_path):
    """A GGUF the engine refuses (here an architecture it does not run) is checked before the
    loaded model is let go: the problem is shown and the chat goes on with the same model."""
    path = tmp_path / "gemma.gguf"
    path.write_bytes(make_tiny_llama_gguf(seed=0, arch="gemma2"))
    ask(chat, "Hi", max_tokens=2)
    before = chat.inner_text("#model-name"), chat.locator("article.msg").count()
    chat.set_input_files("#model-file", str(path))
    chat.wait_for_selector("#problem:not([hidden])", timeout=LOAD_TIMEOUT_MS)
    chat.wait_for_selector("#status[data-state=ready]")
    assert chat.get_attribute("#problem", "data-kind") == "unsupported-model"
    assert "architecture 'gemma2' is not supported" in chat.text_content("#problem-detail")
    assert "still using" in chat.inner_text("#status")
    assert (chat.inner_text("#model-name"), chat.locator("article.msg").count()) == before
    stats = ask(chat, "More", max_tokens=2)
    whole_prompt = stats["cached_tokens"] - stats["generated_tokens"]
    assert stats["generated_tokens"] >= 1 and 0 < stats["prefilled_tokens"] < whole_prompt, stats  # cache kept


def test_a_file_too_large_or_a_failed_download_keeps_the_loaded_model(chat, site, tmp_path):
    """A 9 GiB file (sparse: no disk used) is refused from its stated size, by URL before its body
    is read and from the file picker before it is read, as out-of-memory; a URL that fails (404)
    as a download error. Each time the loaded model and its conversation stay."""
    huge = site.models / "huge.gguf"
    with open(huge, "wb") as f:
        f.truncate(9 << 30)
    ask(chat, "Hi", max_tokens=2)
    before = chat.inner_text("#model-name"), chat.locator("article.msg").count()

    def refused(load, kind, detail):
        chat.evaluate("document.getElementById('problem').hidden = true")
        load()
        chat.wait_for_selector("#problem:not([hidden])", timeout=LOAD_TIMEOUT_MS)
        chat.wait_for_selector("#status[data-state=ready]")
        assert chat.get_attribute("#problem", "data-kind") == kind
        assert detail in chat.text_content("#problem-detail"), chat.text_content("#problem-detail")
        assert "still using" in chat.inner_text("#status")
        assert (chat.inner_text("#model-name"), chat.locator("article.msg").count()) == before

    def by_url(path):  # the settings panel may be closed: set and press through the DOM
        chat.evaluate("p => { document.getElementById('model-url').value = p; document.getElementById('load-url').click(); }",
                      path)

    refused(lambda: by_url("models/huge.gguf"), "out-of-memory", "9.7 GB")
    refused(lambda: chat.set_input_files("#model-file", str(huge)), "out-of-memory", "9.7 GB")
    refused(lambda: by_url("models/missing.gguf"), "download", "HTTP 404")
    chat.evaluate(f"document.getElementById('model-url').value = 'models/{TINY}'")
    stats = ask(chat, "More", max_tokens=2)
    whole_prompt = stats["cached_tokens"] - stats["generated_tokens"]
    assert stats["generated_tokens"] >= 1 and 0 < stats["prefilled_tokens"] < whole_prompt, stats  # cache kept


def test_a_body_of_unstated_length_is_refused_once_it_runs_past_the_limit(context, site):
    """web/model-bytes.js: a response that states no length (content-encoding set) is read until it
    passes maxBytes, then refused as {tooLarge} and nothing of it is kept in the cache."""
    page = context.new_page()
    try:
        page.goto(site.base + "?autoload=0")
        page.add_script_tag(url="model-bytes.js")
        page.route("**/unstated.bin", lambda route: route.fulfill(
            body=bytes(range(256)) * 20, headers={"content-encoding": "identity", "content-type": "application/octet-stream"}))
        got = page.evaluate("""async () => {
            const cache = await caches.open('unstated-test');
            const url = new URL('unstated.bin', location.href).href;
            const over = await PyEngineModelBytes.download(url, { cache, maxBytes: 1000 }).then(
                () => null, (e) => e);
            const kept = await cache.match(url);
            const whole = await PyEngineModelBytes.download(url, {});
            await caches.delete('unstated-test');
            return { over, kept: !!kept, n: whole.bytes.length, last: whole.bytes[5119] };
        }""")
        assert got["over"] and got["over"]["tooLarge"] > 1000, got
        assert got["kept"] is False
        assert (got["n"], got["last"]) == (5120, 255)
    finally:
        page.close()


def test_device_lost_shows_what_to_do(chat):
    chat.evaluate("window.pyEngineChat.engine.loseDevice()")
    ask(chat, "Hi", max_tokens=2)
    assert chat.get_attribute("#problem", "data-kind") == "device-lost"
    assert "Reload the page" in chat.inner_text("#problem-hint")
    assert chat.get_attribute("#status", "data-state") == "error"


def test_no_request_left_the_pages_origin(context, site):
    origin = urlsplit(site.base)
    seen = list(context.requests)
    # The log covers the worker too: Pyodide's wasm and the engine wheel are fetched there.
    assert any(u.endswith(".whl") for u in seen) and any(u.endswith("pyodide.asm.wasm") for u in seen), seen
    foreign = [u for u in seen if not u.startswith(("data:", "blob:"))
               and (urlsplit(u).scheme, urlsplit(u).netloc) != (origin.scheme, origin.netloc)]
    assert foreign == []


def test_without_webgpu_the_page_explains_what_to_do(chromium, site):
    ctx = chromium.new_context(viewport={"width": 390, "height": 800})
    try:
        ctx.add_init_script("delete Navigator.prototype.gpu;")
        page = ctx.new_page()
        page.goto(site.base + f"?model=models/{TINY}")
        page.wait_for_selector("#status[data-state=error]", timeout=30_000)
        assert page.is_visible("#problem")
        assert page.get_attribute("#problem", "data-kind") == "no-webgpu"
        assert "WebGPU is not available" in page.inner_text("#problem-title")
        assert "Chrome or Edge" in page.inner_text("#problem-hint")
        screenshot(page, "chat-no-webgpu.png")
    finally:
        ctx.close()


@pytest.mark.timeout(900)
def test_chat_with_the_real_smollm2(context, site):
    """The default model (SmolLM2-135M-Instruct Q4_1, from setup) end to end: load, one short reply."""
    page = context.new_page()
    try:
        page.goto(site.base)  # autoloads the default model served next to the page
        wait_ready(page, timeout=600_000)
        assert "SmolLM2" in page.inner_text("#model-name")
        page.fill("#max-tokens", "8")
        page.fill("#temperature", "0")
        page.fill("#prompt", "What is the capital of France?")
        page.press("#prompt", "Enter")
        page.wait_for_function("document.querySelectorAll('.msg.assistant[data-done=true]').length > 0",
                               timeout=600_000)
        stats = page.evaluate("window.pyEngineChat.lastStats")
        reply = page.locator(".msg.assistant").last.inner_text()
        screenshot(page, "chat-smollm2.png")
        print(f"SmolLM2 in the page: {reply!r}; stats {stats}")
        assert stats["generated_tokens"] >= 1, stats
        assert "Paris" in reply, reply  # greedy SmolLM2 answers this one correctly
    finally:
        page.close()
