"""web/model-bytes.js keeps a model past 512 MB in the Cache API, as a returning visitor needs
(Chromium refuses to store one built from a finished Uint8Array: every model of a billion
parameters was downloaded again on each visit). A persistent profile, as a person's browser has
(an incognito context's quota is smaller than such a file)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from app.serve import make_server
from browser_harness import WEBGPU_FLAGS, chromium_path

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

SIZE = 600 << 20


@pytest.fixture(scope="module")
def big_site(tmp_path_factory, engine_wheel):
    models = tmp_path_factory.mktemp("big-models")
    # Word i holds i: a cut, shifted or zero-filled copy cannot pass for it.
    np.arange(SIZE // 4, dtype="<u4").tofile(models / "big.gguf")
    log: list = []
    httpd = make_server("127.0.0.1", 0, engine_wheel.parent, extra_models=[models], request_log=log)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", log
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_600_mb_model_is_stored_while_downloading_and_read_back(big_site, tmp_path):
    from playwright.sync_api import sync_playwright

    base, log = big_site
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=chromium_path(),
                                                   headless=True, args=WEBGPU_FLAGS)
        try:
            page = ctx.new_page()
            page.goto(base + "model-bytes.js")  # any document of the origin
            page.add_script_tag(url=base + "model-bytes.js")
            got = page.evaluate("""async (url) => {
              const M = self.PyEngineModelBytes, cache = await caches.open("test-models");
              const isPattern = (b) => { const w = new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4);
                                         for (let i = 0; i < w.length; i++) if (w[i] !== i) return false; return true; };
              let last = null;
              const down = await M.download(url, { cache, onProgress: (loaded, total) => { last = [loaded, total]; } });
              const back = await M.readCached(cache, url);
              return { stored: down.stored, reason: down.reason, size: down.bytes.length, pattern: isPattern(down.bytes),
                       last, backSize: back && back.length, backPattern: !!back && isPattern(back),
                       missing: await M.readCached(cache, url + "?other") };
            }""", base + "models/big.gguf")
        finally:
            ctx.close()
    assert got["stored"], got["reason"]
    assert got["size"] == SIZE and got["pattern"] and got["last"] == [SIZE, SIZE]
    assert got["backSize"] == SIZE and got["backPattern"]
    assert got["missing"] is None
    assert sum(1 for _, path, _ in log if path.endswith("/models/big.gguf")) == 1  # read back, not fetched again
