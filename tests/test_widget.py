"""The widget (web/widget.js) on the demo host page, across origins: the host page is served as
http://localhost:PORT, the chat frame comes from http://127.0.0.1:PORT (two origins, one server).
The host talks to the frame only through postMessage; messages from any other window or origin
are ignored on both sides. Screenshot: test-artifacts/widget-reply.png.
"""
from __future__ import annotations

from urllib.parse import quote

import pytest

from chat_site import LOAD_TIMEOUT_MS, REPLY_TIMEOUT_MS, REPO, TINY, screenshot, site  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
DEFAULT_MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def host(chromium, site):
    """The demo host page on another origin, with the widget pointing at the tiny model."""
    ctx = chromium.new_context(viewport={"width": 1100, "height": 760})
    ctx.requests = []
    ctx.on("request", lambda r: ctx.requests.append(r.url))
    host_origin = f"http://localhost:{site.port}"
    html = (REPO / "web" / "demo-host.html").read_text()
    assert '<script src="widget.js" data-model="%s"></script>' % DEFAULT_MODEL in html  # the documented line
    html = html.replace('src="widget.js"', f'src="{site.base}widget.js"').replace(DEFAULT_MODEL, f"models/{TINY}")
    # Served by the real server (a page fulfilled by Playwright would count as a public address
    # and Chromium's local-network checks would then block the loopback widget script).
    (site.models / "demo-host.html").write_text(html)
    page = ctx.new_page()
    page.goto(f"{host_origin}/models/demo-host.html")
    page.wait_for_function("!!window.pyEngineWidget")
    page.click("[data-py-engine-widget] button")
    page.wait_for_function("['ready', 'error'].includes(document.querySelector('[data-py-engine-widget]').dataset.state)",
                           timeout=LOAD_TIMEOUT_MS)
    page.host_origin = host_origin
    yield page
    ctx.close()


def chat_frame(page):
    return next(f for f in page.frames if "embed=1" in f.url)


def test_widget_frame_is_sandboxed_and_cross_origin(host, site):
    attrs = host.eval_on_selector("[data-py-engine-widget] iframe", "f => [f.getAttribute('sandbox'), f.src]")
    assert attrs[0] == "allow-scripts allow-same-origin"
    assert attrs[1].startswith(site.base + "index.html?embed=1&parent=" + quote(host.host_origin, safe=""))
    assert host.evaluate("document.querySelector('[data-py-engine-widget]').dataset.state") == "ready", \
        chat_frame(host).text_content("#problem")


def test_widget_answers_a_message_from_the_host_page(host):
    frame = chat_frame(host)
    frame.evaluate("document.getElementById('max-tokens').value = '5'; document.getElementById('temperature').value = '0'")
    host.evaluate("pyEngineWidget.send('Hello')")
    host.wait_for_function("Number(document.getElementById('last-reply').dataset.replies || 0) >= 1",
                           timeout=REPLY_TIMEOUT_MS)
    assert host.inner_text("#last-reply").startswith("Last reply (")
    assert frame.locator(".msg.user").first.inner_text().endswith("Hello")
    # A person typing in the frame works too, and the host hears that reply.
    frame.fill("#prompt", "Again")
    frame.press("#prompt", "Enter")
    host.wait_for_function("Number(document.getElementById('last-reply').dataset.replies || 0) >= 2",
                           timeout=REPLY_TIMEOUT_MS)
    assert frame.locator(".msg.assistant[data-done=true]").count() == 2
    screenshot(host, "widget-reply.png")


def test_messages_from_a_foreign_origin_are_ignored(host):
    frame = chat_frame(host)
    users_before = frame.locator(".msg.user").count()
    replies_before = host.evaluate("Number(document.getElementById('last-reply').dataset.replies || 0)")
    evil = """<script>
      parent.frames[0].postMessage({type: 'py-engine:send', text: 'evil'}, '*');
      parent.postMessage({type: 'py-engine:reply', text: 'forged', stats: {generated_tokens: 1}}, '*');
      document.title = 'sent';
    </script>"""
    host.context.route("http://foreign.test/evil.html", lambda route: route.fulfill(body=evil, content_type="text/html"))
    host.evaluate("""() => { const f = document.createElement('iframe'); f.src = 'http://foreign.test/evil.html';
                             document.body.append(f); }""")
    frame.wait_for_function("Number(document.body.dataset.ignoredMessages || 0) >= 1", timeout=15_000)
    host.wait_for_function("Number(document.querySelector('[data-py-engine-widget]').dataset.ignoredMessages || 0) >= 1",
                           timeout=15_000)
    host.wait_for_timeout(500)
    assert frame.locator(".msg.user").count() == users_before
    assert "evil" not in frame.inner_text("#messages")
    assert host.evaluate("Number(document.getElementById('last-reply').dataset.replies || 0)") == replies_before
    assert "forged" not in host.inner_text("#last-reply")
