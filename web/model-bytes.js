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

  // Thrown (as {tooLarge: bytes}) for a file past `maxBytes`, before its bytes are held: at the
  // response's headers where it states its length, else as soon as the body runs past.
  function tooLarge(bytes, maxBytes) {
    return maxBytes && bytes > maxBytes ? { tooLarge: bytes } : null;
  }

  // Read a body stream into one Uint8Array, calling onProgress(loaded, total) at most every 100 ms
  // and once at the end. `total` is the expected length (0: unknown, the buffer grows).
  async function readAll(stream, total, onProgress, maxBytes = 0) {
    const reader = stream.getReader();
    let buf = new Uint8Array(total || 1 << 20), loaded = 0, lastPost = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const over = tooLarge(loaded + value.length, maxBytes);
      if (over) { reader.cancel(); throw over; }
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
  async function readCached(cache, url, onProgress = () => {}, maxBytes = 0) {
    const hit = await cache.match(url);
    if (!hit) return null;
    const total = Number(hit.headers.get("content-length")) || 0;
    const over = tooLarge(total, maxBytes);
    if (over) { hit.body.cancel(); throw over; }
    return readAll(hit.body, total, onProgress, maxBytes);
  }

  // Download `url`; with a cache, store the response in it while reading. Resolves to
  // {bytes, stored, reason}: stored is false (with the reason) when the cache refused it (quota,
  // storage blocked), which leaves the bytes usable. A failed download throws the Response as
  // {status, statusText}; a network error throws as fetch does; a file past maxBytes (0: any
  // size) throws {tooLarge}, neither read nor stored.
  async function download(url, { cache = null, onProgress = () => {}, fetchOptions = {}, maxBytes = 0 } = {}) {
    const stop = new AbortController();  // a body past maxBytes stops both branches of the tee
    const resp = await fetch(url, { signal: stop.signal, ...fetchOptions });
    if (!resp.ok) throw { status: resp.status, statusText: resp.statusText };
    // A compressed response's content-length is not the body's: the length is then unknown.
    const total = resp.headers.get("content-encoding") ? 0 : Number(resp.headers.get("content-length")) || 0;
    const over = tooLarge(total, maxBytes);
    if (over) { resp.body.cancel(); throw over; }
    let body = resp.body, storing = null;
    if (cache) {
      const [mine, kept] = body.tee();
      body = mine;
      const headers = total ? { ...HEADERS, "content-length": String(total) } : HEADERS;
      storing = cache.put(url, new Response(kept, { headers })).then(() => null, (e) => String(e && e.message || e));
    }
    let bytes;
    try {
      bytes = await readAll(body, total, onProgress, maxBytes);
    } catch (e) {
      stop.abort();  // the cache's put then fails: nothing is kept
      throw e;
    }
    const reason = storing ? await storing : "no cache";
    return { bytes, stored: reason === null, reason };
  }

  self.PyEngineModelBytes = { download, readCached };
})();
