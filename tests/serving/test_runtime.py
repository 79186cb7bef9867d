"""The serving runtime as a real process on 127.0.0.1: V2 (plain HTTP and kserve's
own client), V1, metadata, metrics, 4xx for bad input, load failures, and a
SIGTERM during a stream of requests."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests

from .conftest import SERVING


def v2_body(x: np.ndarray, name: str = "input", datatype: str = "FP32", **extra) -> dict:
    return {"inputs": [{"name": name, "datatype": datatype, "shape": list(x.shape),
                        "data": x.flatten().tolist()}], **extra}


def outputs_by_name(doc: dict) -> dict[str, np.ndarray]:
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in doc["outputs"]}


# --- V2 / V1 over plain HTTP --------------------------------------------------------


def test_v2_infer_onnx(onnx_server, models, iris):
    r = requests.post(f"{onnx_server.url}/v2/models/iris/infer", json=v2_body(iris.X, id="req-1"), timeout=10)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model_name"] == "iris" and doc["id"] == "req-1"
    out = outputs_by_name(doc)
    np.testing.assert_array_equal(out["output_label"], models.sklearn.predict(iris.X))
    np.testing.assert_allclose(out["output_probability"], models.sklearn.predict_proba(iris.X), atol=1e-5)
    assert {o["name"]: o["datatype"] for o in doc["outputs"]} == {"output_label": "INT64",
                                                                   "output_probability": "FP32"}
    # the generic single-input name works too, and FP64 data is cast
    r = requests.post(f"{onnx_server.url}/v2/models/iris/infer",
                      json=v2_body(iris.X[:5], name="input-0", datatype="FP64"), timeout=10)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(outputs_by_name(r.json())["output_label"], models.sklearn.predict(iris.X[:5]))


def test_v2_infer_sklearn(sklearn_server, models, iris):
    url = f"{sklearn_server.url}/v2/models/iris-sk/infer"
    r = requests.post(url, json=v2_body(iris.X, name="input-0", datatype="FP64"), timeout=10)
    assert r.status_code == 200, r.text
    out = outputs_by_name(r.json())
    assert list(out) == ["predict"]
    np.testing.assert_array_equal(out["predict"], models.sklearn.predict(iris.X))
    # probabilities on request (V2 "outputs")
    r = requests.post(url, json=v2_body(iris.X, name="input-0", datatype="FP64",
                                        outputs=[{"name": "predict_proba"}]), timeout=10)
    assert r.status_code == 200, r.text
    out = outputs_by_name(r.json())
    assert list(out) == ["predict_proba"]
    np.testing.assert_allclose(out["predict_proba"], models.sklearn.predict_proba(iris.X), rtol=1e-12)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_v2_with_kserve_client(onnx_server, models, iris, binary):
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    x = iris.X.astype(np.float32)

    async def infer():
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=10))
        try:
            inp = InferInput(name="input", shape=list(x.shape), datatype="FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            req = InferRequest(model_name="iris", infer_inputs=[inp], request_id="kserve-client",
                               parameters={"binary_data_output": binary})
            return await client.infer(onnx_server.url, req, model_name="iris")
        finally:
            await client.close()

    res = asyncio.run(infer())
    assert res.id == "kserve-client"
    np.testing.assert_array_equal(res.get_output_by_name("output_label").as_numpy(), models.sklearn.predict(iris.X))
    np.testing.assert_allclose(res.get_output_by_name("output_probability").as_numpy(),
                               models.sklearn.predict_proba(iris.X), atol=1e-5)


def test_v1_predict(onnx_server, sklearn_server, models, iris):
    want = models.sklearn.predict(iris.X).tolist()
    for srv, name in ((onnx_server, "iris"), (sklearn_server, "iris-sk")):
        r = requests.post(f"{srv.url}/v1/models/{name}:predict", json={"instances": iris.X.tolist()}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": want}
    # a body sent without content-type: application/json is still read as JSON
    r = requests.post(f"{sklearn_server.url}/v1/models/iris-sk:predict",
                      data=json.dumps({"instances": iris.X[:3].tolist()}), timeout=10)
    assert r.status_code == 200 and r.json() == {"predictions": want[:3]}


def test_v1_row_dicts_by_feature_name(models, iris):
    """V1 instances given as row dicts become one input per key: here, the
    columns of a model fitted on a DataFrame."""
    from kubelab.server_extension.serving.loaders import load
    from kubelab.server_extension.serving.runtime import _v1_inputs

    rows = [dict(zip(iris.columns, map(float, x))) for x in iris.X[:5]]
    inputs = _v1_inputs({"instances": rows})
    assert sorted(inputs) == sorted(iris.columns) and inputs["sepal_length"].shape == (5,)
    out = load("sklearn", str(models.dirs["sklearn_df"])).predict(inputs)
    np.testing.assert_array_equal(out["predict"], models.sklearn.predict(iris.X[:5]))


def test_metadata_and_health(onnx_server, sklearn_server):
    doc = requests.get(f"{onnx_server.url}/v2/models/iris", timeout=5).json()
    assert doc["name"] == "iris"
    assert doc["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert doc["outputs"] == [{"name": "output_label", "datatype": "INT64", "shape": [-1]},
                              {"name": "output_probability", "datatype": "FP32", "shape": [-1, -1]}]
    doc = requests.get(f"{sklearn_server.url}/v2/models/iris-sk", timeout=5).json()
    assert doc["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert doc["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]},
                              {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]}]
    for path in ("/v2/health/ready", "/v2/health/live", "/v2/models/iris/ready", "/v1/models/iris"):
        assert requests.get(onnx_server.url + path, timeout=5).status_code == 200, path
    assert requests.get(f"{onnx_server.url}/v2/models/other/ready", timeout=5).status_code == 404


def test_bad_requests_are_4xx_with_a_message(onnx_server, sklearn_server, iris):
    infer = f"{onnx_server.url}/v2/models/iris/infer"
    cases = [
        (infer, v2_body(iris.X[:2, :3]), "shape [2, 3]; the model expects [-1, 4]"),
        (infer, {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1, 4], "data": ["a", "b", "c", "d"]}]},
         "datatype BYTES; the model expects FP32"),
        (infer, {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": [1, 2, 3]}]},
         "the data does not fit"),
        (infer, v2_body(iris.X[:2], name="features"), "unknown input 'features'"),
        (infer, v2_body(iris.X[:2], outputs=[{"name": "nope"}]), "unknown output 'nope'"),
        (infer, {"inputs": [{"name": "input", "datatype": "FP99", "shape": [1], "data": [1]}]},
         "unknown datatype 'FP99'; use one of BOOL, "),
        (f"{onnx_server.url}/v2/models/other/infer", v2_body(iris.X[:2]), "other"),
        (f"{onnx_server.url}/v1/models/iris:predict", {"instances": [[1, 2, 3, 4], [1, 2]]}, "rectangular"),
        (f"{onnx_server.url}/v1/models/iris:predict", {"rows": [[1, 2, 3, 4]]}, "instances"),
        (f"{sklearn_server.url}/v1/models/iris-sk:predict", {"instances": [["a", "b", "c", "d"]]},
         "not compatible with arrays of bytes/strings"),
    ]
    for url, body, message in cases:
        r = requests.post(url, json=body, timeout=10)
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
        assert message in r.text, (body, r.text)
    r = requests.post(infer, data=b"{not json", headers={"content-type": "application/json"}, timeout=10)
    assert 400 <= r.status_code < 500, r.text
    # the model still works, and the pod log got one line per bad request, no tracebacks
    assert requests.post(infer, json=v2_body(iris.X[:1]), timeout=10).status_code == 200
    log = onnx_server.log()
    assert "Traceback" not in log and "400 InvalidInput: input 'input' has shape [2, 3]" in log


def _metrics(url: str) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{url}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics(onnx_server, iris):
    before = _metrics(onnx_server.url)
    key = ("request_predict_seconds_count", (("model_name", "iris"),))
    ok = ("kubelab_serving_requests_total", (("model_name", "iris"), ("outcome", "ok"), ("protocol", "v2")))
    bad = ("kubelab_serving_requests_total",
           (("model_name", "iris"), ("outcome", "invalid_input"), ("protocol", "v2")))
    for _ in range(5):
        requests.post(f"{onnx_server.url}/v2/models/iris/infer", json=v2_body(iris.X[:2]), timeout=10)
    requests.post(f"{onnx_server.url}/v2/models/iris/infer", json=v2_body(iris.X[:2, :3]), timeout=10)
    after = _metrics(onnx_server.url)
    assert after[key] - before.get(key, 0) == 6  # kserve times every call into the model
    assert after[ok] - before.get(ok, 0) == 5
    assert after[bad] - before.get(bad, 0) == 1
    for name in ("request_preprocess_seconds_count", "request_postprocess_seconds_count"):
        assert (name, (("model_name", "iris"),)) in after
    assert after[("kubelab_serving_model_load_seconds", (("format", "onnx"), ("model_name", "iris")))] > 0


def test_timings(onnx_server, iris):
    """Start-up time and a single-row inference's latency (printed; loose bounds)."""
    body = v2_body(iris.X[:1])
    with requests.Session() as s:
        url = f"{onnx_server.url}/v2/models/iris/infer"
        for _ in range(20):
            s.post(url, json=body, timeout=10)
        times = []
        for _ in range(200):
            t = time.perf_counter()
            assert s.post(url, json=body, timeout=10).status_code == 200
            times.append(time.perf_counter() - t)
    p50 = statistics.median(times) * 1000
    p99 = sorted(times)[int(len(times) * 0.99)] * 1000
    print(f"\nserving timings: start-to-ready {onnx_server.start_seconds:.2f}s, "
          f"single-row V2 infer p50 {p50:.2f}ms p99 {p99:.2f}ms")
    assert onnx_server.start_seconds < 30
    assert p50 < 50


# --- load failures ----------------------------------------------------------------


def _run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", SERVING, *args], capture_output=True, text=True, timeout=timeout)


def test_load_failure_is_one_line(tmp_path, models):
    (tmp_path / "model.onnx").write_bytes(b"garbage bytes")
    termination_log = tmp_path / "termination-log"
    termination_log.write_text("")
    p = _run_cli("--model-dir", str(tmp_path), "--model-name", "iris", "--format", "onnx",
                 "--termination-log", str(termination_log))
    assert p.returncode == 1
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("kubelab-serving: cannot load model 'iris' (onnx): "
                               "onnx: model.onnx is not a valid ONNX model: "), lines[0]
    assert termination_log.read_text() == lines[0] + "\n"

    for args, want in [
        (("--model-dir", str(tmp_path / "missing"), "--format", "sklearn"),
         f"kubelab-serving: cannot load model 'm' (sklearn): sklearn: model directory {tmp_path / 'missing'} "
         "does not exist"),
        (("--model-dir", str(models.dirs["onnx"]), "--format", "pytorch"),
         "kubelab-serving: cannot load model 'm' (pytorch): unknown model format 'pytorch': expected one of "
         "sklearn, xgboost, lightgbm, onnx, torchscript, safetensors"),
        (("--model-dir", str(models.dirs["safetensors"]), "--format", "safetensors"),
         "kubelab-serving: cannot load model 'm' (safetensors): safetensors: safetensors holds weights only; "
         "serve it with a custom runtime"),
    ]:
        p = _run_cli("--model-name", "m", *args)
        assert p.returncode == 1 and p.stderr.splitlines() == [want], p.stderr


# --- shutdown ---------------------------------------------------------------------


def wait_not_ready(srv, name: str, timeout: float = 2) -> float:
    """When the model's readiness first answered 503 (time.monotonic())."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests.get(f"{srv.url}/v2/models/{name}/ready", timeout=5).status_code == 503:
            return time.monotonic()
        time.sleep(0.01)
    raise AssertionError(f"readiness never turned 503:\n{srv.log()}")


def test_sigterm_drains_then_shuts_down_losing_nothing(models, iris, start_server):
    """SIGTERM during a stream of requests: readiness turns 503 while requests are
    still served for --drain-seconds; then the listener closes (new connections are
    refused) and a request already in flight still gets its answer."""
    drain = 1.5
    srv = start_server(models.dirs["onnx"], "drain", "onnx", "--drain-seconds", str(drain))
    url = f"{srv.url}/v2/models/drain/infer"
    body = json.dumps(v2_body(iris.X[:3])).encode()
    want = models.sklearn.predict(iris.X[:3]).tolist()
    results: list[tuple[float, object]] = []
    stop = threading.Event()

    def client(closing: list):
        with requests.Session() as s:  # a pooled keep-alive client
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    r = s.post(url, data=body, headers={"content-type": "application/json"}, timeout=10)
                    ok = r.status_code == 200 and outputs_by_name(r.json())["output_label"].tolist() == want
                    results.append((t0, "ok" if ok else f"HTTP {r.status_code}: {r.text[:200]}"))
                    if r.headers.get("connection") == "close":
                        closing.append(t0)
                except requests.ConnectionError as exc:
                    results.append((t0, type(exc)))
                    time.sleep(0.01)

    closing: list[float] = []
    threads = [threading.Thread(target=client, args=(closing,), daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    # a request in flight across the whole shutdown: headers and half the body now, the rest later
    inflight = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    inflight.sendall(b"POST /v2/models/drain/infer HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n" % len(body) + body[:20])
    time.sleep(0.5)

    t_term = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    not_ready_after = wait_not_ready(srv, "drain") - t_term
    ready = [requests.get(f"{srv.url}/v2/models/drain/ready", timeout=5).status_code for _ in range(3)]
    health = requests.get(f"{srv.url}/v2/health/ready", timeout=5).status_code
    live = requests.get(f"{srv.url}/v2/health/live", timeout=5).status_code

    # wait until the listener has closed (the clients see refusals)
    deadline = time.monotonic() + drain + 10
    while time.monotonic() < deadline and not any(isinstance(o, type) for _, o in results):
        time.sleep(0.05)
    closed_at = time.monotonic()
    stop.set()
    for t in threads:
        t.join(15)
    assert srv.proc.poll() is None, "the server must wait for the request in flight"
    inflight.sendall(body[20:])
    response = b""
    while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
        chunk = inflight.recv(65536)
        if not chunk:
            break
        response += chunk
    inflight.close()
    assert srv.proc.wait(15) == 0, srv.log()

    assert not_ready_after < 0.5 and ready == [503, 503, 503] and health == 503 and live == 200
    assert response.startswith(b"HTTP/1.1 200"), response
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["outputs"][0]["data"] == want
    served = [t0 for t0, o in results if o == "ok"]
    errors = [(t0 - t_term, o) for t0, o in results if o != "ok"]
    assert not [e for e in errors if not isinstance(e[1], type)], errors  # no HTTP error, ever
    assert errors, "the clients never saw the listener close"
    # requests were served during the drain, and connection failures only came after it
    assert any(t_term + 0.3 < t0 < t_term + drain - 0.1 for t0 in served)
    assert min(dt for dt, _ in errors) > drain - 0.3, errors[:3]
    assert closed_at - t_term >= drain - 0.3
    # while draining, keep-alive clients are told to reconnect (elsewhere)
    assert closing and min(closing) > t_term - 0.1
    log = srv.log()
    assert "SIGTERM: draining for 1.5s" in log and "Traceback" not in log


def test_two_workers_reload_the_model_and_drain(models, iris, start_server):
    """--workers 2: kserve spawns worker processes; each reloads the model (an
    onnxruntime session does not pickle) and honours the drain."""
    srv = start_server(models.dirs["onnx"], "multi", "onnx", "--workers", "2", "--drain-seconds", "1")
    with requests.Session() as s:
        for _ in range(10):
            r = s.post(f"{srv.url}/v2/models/multi/infer", json=v2_body(iris.X[:4]), timeout=10)
            assert r.status_code == 200, r.text
    t = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    assert wait_not_ready(srv, "multi") - t < 0.8  # the flag reaches the worker processes
    assert requests.post(f"{srv.url}/v2/models/multi/infer", json=v2_body(iris.X[:4]), timeout=10).status_code == 200
    assert srv.proc.wait(30) == 0, srv.log()
    assert time.monotonic() - t >= 1
