// A model file's bytes from a URL, with progress, kept in the Cache API for the next visit.
// A classic script (the engine's worker takes it with importScripts, the bench page with a
// <script> tag): it defines self.PyEngineModelBytes = {download, readCached}.
//
// The download is streamed into the cache as it arrives (one branch of the body's tee): putting
// a finished Uint8Array instead makes Chromium build one in-memory blob of the whole file, which
// it refuses past ~512 MB ("Unexpected internal error"), so every model of 1B parameters or more
// was downloaded again on each visit.
"use strict";

(function () {
  const HEADERS = { "content-type": "application/octet-stream" };

  // Read a body stream into one Uint8Array, calling onProgress(loaded, total) at most every 100 ms
  // and once at the end. `total` is the expected length (0: unknown, the buffer grows).
  async function readAll(stream, total, onProgress) {
    const reader = stream.getReader();
    let buf = new Uint8Array(total || 1 << 20), loaded = 0, lastPost = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (loaded + value.length > buf.length) {  // unknown or wrong length: grow
        const bigger = new Uint8Array(Math.max(buf.length * 2, loaded + value.length));
        bigger.set(buf.subarray(0, loaded));
        buf = bigger;
      }
      buf.set(value, loaded);
      loaded += value.length;
      const now = performance.now();
      if (now - lastPost > 100) { onProgress(loaded, total); lastPost = now; }
    }
    onProgress(loaded, total || loaded);
    return loaded === buf.length ? buf : buf.subarray(0, loaded);
  }

  // The bytes stored for `url` in `cache`, or null. onProgress(loaded, total) as they are read.
  async function readCached(cache, url, onProgress = () => {}) {
    const hit = await cache.match(url);
    if (!hit) return null;
    return readAll(hit.body, Number(hit.headers.get("content-length")) || 0, onProgress);
  }

  // Download `url`; with a cache, store the response in it while reading. Resolves to
  // {bytes, stored, reason}: stored is false (with the reason) when the cache refused it (quota,
  // storage blocked), which leaves the bytes usable. A failed download throws the Response as
  // {status, statusText}; a network error throws as fetch does.
  async function download(url, { cache = null, onProgress = () => {}, fetchOptions = {} } = {}) {
    const resp = await fetch(url, fetchOptions);
    if (!resp.ok) throw { status: resp.status, statusText: resp.statusText };
    // A compressed response's content-length is not the body's: the length is then unknown.
    const total = resp.headers.get("content-encoding") ? 0 : Number(resp.headers.get("content-length")) || 0;
    let body = resp.body, storing = null;
    if (cache) {
      const [mine, kept] = body.tee();
      body = mine;
      const headers = total ? { ...HEADERS, "content-length": String(total) } : HEADERS;
      storing = cache.put(url, new Response(kept, { headers })).then(() => null, (e) => String(e && e.message || e));
    }
    const bytes = await readAll(body, total, onProgress);
    const reason = storing ? await storing : "no cache";
    return { bytes, stored: reason === null, reason };
  }

  self.PyEngineModelBytes = { download, readCached };
})();
