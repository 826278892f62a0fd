"""The browser benchmark (python -m app bench --browser) on the tiny model: the bench page runs in
headless Chromium, POSTs its JSON to the server, and every figure is there and positive. wllama
is not needed (--no-wllama). Also the server's bench routes and the tokenizer copy for --synthetic."""
from __future__ import annotations

import argparse
import http.client
import threading

import pytest

from app import bench as app_bench
from app import bench_browser
from py_engine.loaders.gguf import read_gguf
from py_engine.testing.tiny_gguf import make_tiny_llama_gguf


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench-model") / "tiny.gguf"
    path.write_bytes(make_tiny_llama_gguf(seed=3))
    return path


def _args(*argv):
    p = argparse.ArgumentParser()
    app_bench.add_arguments(p)
    return p.parse_args(list(argv))


def test_unknown_case_module_is_refused_before_the_browser():
    assert bench_browser.case_modules("quant,fusion") == ["quant", "fusion"]
    with pytest.raises(SystemExit, match="--cases nope: no py_engine.testing.nope_cases module"):
        bench_browser.case_modules("quant,nope")


def test_ratios_are_engine_over_wllama_for_figures_both_have():
    engine = {"prefill_128_tokens_per_s": 30.0, "decode_short_tokens_per_s": 10.0, "load_cold_seconds": 2.0}
    wllama = {"prefill_128_tokens_per_s": 60.0, "decode_short_tokens_per_s": 0, "load_cold_seconds": 4.0}
    assert bench_browser.ratios(engine, wllama) == {"prefill_128_tokens_per_s": 0.5, "load_cold_seconds": 0.5}
    assert bench_browser.ratios(engine, None) == {}


def test_tokenizer_gguf_keeps_every_tokenizer_key_with_its_type(tiny_model, tmp_path):
    out = tmp_path / "tok.gguf"
    bench_browser.write_tokenizer_gguf(tiny_model, out)
    src, got = read_gguf(tiny_model.read_bytes()), read_gguf(out.read_bytes())
    keys = {k for k in src.metadata if k.startswith("tokenizer.")}
    assert keys and set(got.metadata) == keys
    for k in keys:
        assert got.metadata[k] == src.metadata[k], k
        assert got.metadata_types[k] == src.metadata_types[k], k
    assert not got.tensors


def test_server_bench_routes_post_to_sink_and_isolate_bench_pages(tmp_path):
    from app.serve import make_server

    got = []
    httpd = make_server("127.0.0.1", 0, tmp_path, bench_sink=lambda kind, text: got.append((kind, text)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        host, port = httpd.server_address[:2]

        def request(method, path, body=None):
            c = http.client.HTTPConnection(host, port, timeout=10)
            c.request(method, path, body=body)
            r = c.getresponse()
            r.read()
            c.close()
            return r

        assert request("POST", "/bench/result", b'{"x": 1}').status == 204
        assert request("POST", "/bench/log", b"line").status == 204
        assert request("POST", "/elsewhere", b"no").status == 404
        assert got == [("result", '{"x": 1}'), ("log", "line")]
        page = request("GET", "/bench/index.html")
        assert page.status == 200
        assert page.getheader("Cross-Origin-Opener-Policy") == "same-origin"
        assert page.getheader("Cross-Origin-Embedder-Policy") == "require-corp"
        assert request("GET", "/index.html").getheader("Cross-Origin-Embedder-Policy") is None
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.browser
@pytest.mark.timeout(120)
@pytest.mark.parametrize("driver", ["process"])  # the GPU machine's path (no Playwright there)
def test_bench_page_reports_every_figure_positive(tiny_model, engine_wheel, driver):
    args = _args("--browser", "--model", str(tiny_model), "--context", "64", "--prefill", "8",
                 "--decode", "2", "--long-context", "24", "--no-wllama", "--driver", driver,
                 "--wheel", str(engine_wheel), "--timeout", "100", "--submit-groups-steps", "2", "--cases", "quant")
    result = bench_browser.run_browser_bench(args, echo=False)
    engine = result["engine"]
    for key in ("load_cold_seconds", "load_cached_seconds", "prefill_8_tokens_per_s", "decode_short_tokens_per_s",
                "decode_long_tokens_per_s", "host_ms_per_decode_step_short", "host_ms_per_decode_step_long",
                "dispatches_per_token", "dispatches_per_step", "runtime_seconds", "decode_sampled_short_tokens_per_s",
                "host_ms_prepare_short", "wall_ms_per_token_short"):
        assert isinstance(engine.get(key), (int, float)) and engine[key] > 0, (key, engine.get(key))
    for label in ("short", "long"):
        mean, p90, top = engine[f"host_ms_per_decode_step_{label}_mean_p90_max"]
        assert 0 < mean <= top and 0 < p90 <= top, engine
    assert engine["dispatches_per_token"] <= engine["dispatches_per_step"]
    assert engine["decode_long_context"] == 24 and engine["decode_short_context"] == 16
    assert "swiftshader" in str(engine["adapter"]).lower(), engine["adapter"]
    # Every feature the adapter offers (SwiftShader: subgroups and timestamps among them), and no
    # subgroup-matrix shapes there.
    assert {"subgroups", "timestamp-query"} <= set(engine["adapter_features"]), engine["adapter_features"]
    assert engine["subgroup_matrix_configs"] == [], engine["subgroup_matrix_configs"]
    # GPU time is either measured (positive) or absent with the reason.
    gpu = engine["gpu_ms_per_token_short"]
    assert (isinstance(gpu, float) and gpu > 0) or (gpu is None and engine["gpu_ms_note"]), engine
    if gpu is not None:  # then GPU time per op kind too, for a decode step and the prefill
        for key in ("profile_decode_16", "profile_prefill_8"):
            prof = engine[key]
            assert prof["step_us"] > 0 and prof["ops"], (key, prof)
            assert all(o["n"] > 0 and o["us"] >= 0 for o in prof["ops"].values()), (key, prof)
        assert engine["gpu_ms_per_token_long"] > 0, engine
        assert engine["decode_pass_timeline_16"]["tokens_per_s"] > 0, engine
        groups = engine["decode_submit_groups_16"]  # asked for 2 steps per setting
        assert groups["steps"] == 2 and set(groups["us_per_step_wall_js"]) == {
            "1", "2", "4", "8", "4_one_pass", "8_one_pass"}, groups
        for runs in groups["us_per_step_wall_js"].values():
            assert len(runs) == 3 and all(wall > 0 and 0 <= js <= wall for wall, js in runs), groups
    assert result["wllama"] == {"skipped": "--no-wllama"} and result["engine_over_wllama"] == {}
    assert result["cross_origin_isolated"] is True
    # --cases: the quant test cases ran on the page's GPU first, each against its numpy reference.
    from py_engine.testing.quant_cases import CASES

    cases = engine["cases"]
    assert cases["mma_f16"] is False and cases["quant"]["failed"] == {}, cases
    assert set(cases["quant"]["passed"]) == set(CASES), cases
