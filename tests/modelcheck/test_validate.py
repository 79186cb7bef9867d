"""validate() end to end: real artifacts, the pickle gate and scanner, and the
sandboxed load (a real child process each time)."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import time

import joblib
import numpy as np
import pytest

from kubelab.server_extension.modelcheck import PICKLE_REFUSED, sandbox, validate

from .conftest import PAYLOADS, Eval, OsSystem, Popen, frame_hidden_joblib


def _valid(v, fmt):
    assert v.status == "valid", v.reason
    assert v.format == fmt
    assert v.runtime.startswith("kubelab-serving ")
    assert v.checked_at.endswith("+00:00")
    json.dumps(v.to_dict())  # JSON-ready
    return v


@pytest.mark.parametrize("name", ["joblib", "joblib-z3", "pickle"])
def test_sklearn_pickles_are_refused_by_default(artifacts, name):
    v = validate(artifacts[name])
    assert v.status == "refused"
    assert v.format == "sklearn"
    assert v.reason.startswith(PICKLE_REFUSED)
    assert "c.ModelService.allow_pickle" in v.reason
    assert v.pickle is None and v.signature is None  # nothing scanned, nothing loaded


@pytest.mark.parametrize("name", ["joblib", "joblib-z3", "pickle"])
def test_sklearn_pickles_are_valid_when_allowed(artifacts, name):
    v = _valid(validate(artifacts[name], allow_pickle=True), "sklearn")
    assert v.pickle.safe
    assert "sklearn.linear_model._logistic.LogisticRegression" in v.pickle.globals
    assert v.signature["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert {"scikit-learn", "joblib", "numpy"} <= set(v.framework_versions)
    assert v.prediction_ok is True


def test_onnx_is_valid(artifacts):
    v = _valid(validate(artifacts["onnx"], declared_format="onnx"), "onnx")
    assert v.pickle is None
    assert v.signature["inputs"][0]["datatype"] == "FP32"
    assert "onnxruntime" in v.framework_versions
    assert v.prediction_ok is True


def test_xgboost_json_is_valid(artifacts):
    v = _valid(validate(artifacts["xgboost"]), "xgboost")
    assert v.signature["inputs"][0]["shape"] == [-1, 4]
    assert "xgboost" in v.framework_versions and v.prediction_ok is True


def test_lightgbm_text_is_valid(artifacts):
    v = _valid(validate(artifacts["lightgbm"], declared_format="lightgbm"), "lightgbm")
    assert "lightgbm" in v.framework_versions and v.prediction_ok is True


def test_safetensors_loads_but_is_not_run(artifacts):
    v = _valid(validate(artifacts["safetensors"]), "safetensors")
    assert v.prediction_ok is None
    assert any("not servable" in w for w in v.warnings)


def test_sandbox_isolation_is_recorded(artifacts):
    v = validate(artifacts["xgboost"])
    iso = v.isolation
    assert iso["rlimits"]["as_mb"] == 2048 and iso["clean_env"] is True
    # every layer is either applied or skipped with a reason
    assert iso["applied"] or iso["skipped"]
    for layer in ("netns", "landlock"):
        assert any(a.startswith(layer) for a in iso["applied"]) or layer in iso["skipped"]


# -- malicious pickles -------------------------------------------------------------------

def _malicious_dir(tmp_path, payload: bytes, name="model.pkl"):
    d = tmp_path / "model"
    d.mkdir()
    (d / name).write_bytes(payload)
    return d


@pytest.mark.parametrize("allow_pickle", [False, True])
@pytest.mark.parametrize("name", list(PAYLOADS))
def test_malicious_pickles_never_run(tmp_path, name, allow_pickle):
    make, expected, says = PAYLOADS[name]
    marker = tmp_path / "marker"
    d = _malicious_dir(tmp_path, make(marker))
    v = validate(d, allow_pickle=allow_pickle)
    assert v.status == "refused"
    if allow_pickle:
        assert expected in v.pickle.refused
        assert says in v.reason
        assert v.signature is None and not v.isolation  # never loaded
    else:
        assert v.reason.startswith(PICKLE_REFUSED)
    assert not marker.exists()


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_estimator_carrying_a_payload_never_runs(tmp_path, logreg, allow_pickle):
    marker = tmp_path / "marker"
    est = pickle.loads(pickle.dumps(logreg))
    est.hidden_ = [Popen(marker), OsSystem(marker), Eval(marker)]
    d = tmp_path / "model"
    d.mkdir()
    joblib.dump(est, d / "model.joblib", compress=3)
    v = validate(d, declared_format="sklearn", allow_pickle=allow_pickle)
    assert v.status == "refused"
    if allow_pickle:
        assert v.pickle.refused == ["builtins.eval", "posix.system", "subprocess.Popen"]
        assert "posix.system (denylisted (posix))" in v.reason
    assert not marker.exists()


def test_joblib_with_payload_next_to_arrays_is_refused(tmp_path):
    marker = tmp_path / "marker"
    d = tmp_path / "model"
    d.mkdir()
    joblib.dump({"coef": np.arange(1000.0), "evil": OsSystem(marker), "intercept": np.zeros(3),
                 "objs": np.array(["a", Popen(marker)], dtype=object)}, d / "model.joblib")
    v = validate(d, allow_pickle=True)
    assert v.status == "refused"
    assert v.pickle.refused == ["posix.system", "subprocess.Popen"]
    assert not marker.exists()


def test_frame_trick_is_refused(tmp_path):
    marker = tmp_path / "marker"
    v = validate(_malicious_dir(tmp_path, frame_hidden_joblib(marker), "model.joblib"), allow_pickle=True)
    assert v.status == "refused" and "posix.system" in v.reason
    assert not marker.exists()


def test_a_pickle_beside_another_format_is_gated_and_scanned(artifacts, tmp_path):
    marker = tmp_path / "marker"
    d = tmp_path / "model"
    shutil.copytree(artifacts["onnx"], d)
    (d / "preprocess.pkl").write_bytes(pickle.dumps(OsSystem(marker)))
    v = validate(d, declared_format="onnx")
    assert v.status == "refused" and v.reason == f"{PICKLE_REFUSED}: preprocess.pkl"
    v = validate(d, declared_format="onnx", allow_pickle=True)
    assert v.status == "refused" and "posix.system" in v.reason
    assert not marker.exists()


def test_hidden_pickles_are_found(tmp_path):
    # the sklearn loader would pick up a lone ".model.pkl": so does the check
    marker = tmp_path / "marker"
    v = validate(_malicious_dir(tmp_path, pickle.dumps(OsSystem(marker)), ".model.pkl"), allow_pickle=True)
    assert v.status == "refused" and v.file == ".model.pkl" and "posix.system" in v.reason
    assert not marker.exists()


def test_unlisted_globals_are_refused_and_the_allowlist_extends(tmp_path, logreg):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from kubelab.server_extension.modelcheck import DEFAULT_ALLOWLIST

    d = tmp_path / "model"
    d.mkdir()
    X = np.random.default_rng(0).random((20, 4))
    joblib.dump(make_pipeline(FunctionTransformer(np.log1p), pickle.loads(pickle.dumps(logreg))).fit(
        X, (X[:, 0] > 0.5).astype(int)), d / "model.joblib")
    v = validate(d, allow_pickle=True, allowlist=("sklearn.",))
    assert v.status == "refused" and "numpy.log1p (not on the allowlist)" in v.reason
    v = validate(d, allow_pickle=True, allowlist=DEFAULT_ALLOWLIST)
    assert v.status == "valid", v.reason


# -- invalid models -------------------------------------------------------------------------

def test_declared_format_contradicting_content_is_invalid(artifacts):
    v = validate(artifacts["pickle"], declared_format="onnx", allow_pickle=True)
    assert v.status == "invalid"
    assert v.reason.startswith("you said onnx but model.pkl is a pickle")
    assert not v.isolation  # nothing loaded


def test_unknown_files_are_invalid(tmp_path):
    (tmp_path / "model.bin").write_bytes(os.urandom(256))
    v = validate(tmp_path)
    assert v.status == "invalid"
    assert "supported formats: sklearn" in v.reason and "safetensors" in v.reason


def test_unknown_declared_format_is_invalid(artifacts):
    v = validate(artifacts["onnx"], declared_format="keras")
    assert v.status == "invalid" and v.reason.startswith("unknown format 'keras'; supported formats:")


def test_truncated_onnx_is_invalid_with_the_loaders_reason(artifacts):
    v = validate(artifacts["onnx-truncated"])
    assert v.status == "invalid"
    assert v.reason.startswith("onnx: model.onnx is not a valid ONNX model: ")
    assert "\n" not in v.reason
    assert v.isolation  # it went as far as the sandbox


def test_a_slow_load_times_out(artifacts):
    # importing scikit-learn alone takes longer than this
    t = time.monotonic()
    v = validate(artifacts["joblib"], allow_pickle=True, timeout=0.3)
    assert v.status == "invalid"
    assert v.reason == "loading model.joblib timed out after 0.3s"
    assert time.monotonic() - t < 10


# -- the sandbox itself ------------------------------------------------------------------------

def test_sandbox_kills_a_load_that_hangs(tmp_path):
    t = time.monotonic()
    r = sandbox.run("selftest:hang", str(tmp_path), timeout=1)
    assert r.timed_out and r.error == "timed out after 1s"
    assert time.monotonic() - t < 5


def test_sandbox_leaves_no_process_behind(tmp_path):
    r = sandbox.run("selftest:orphan", str(tmp_path), timeout=30)
    pid = r.report["orphan"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):  # killed, waiting for init to reap it
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} left by the sandbox is still running")


def test_sandbox_stops_a_load_that_eats_memory(tmp_path):
    r = sandbox.run("selftest:memory", str(tmp_path), timeout=30, memory_mb=512)
    assert not r.ok and not r.timed_out
    assert "ran out of memory (limit 512 MiB" in r.error


def test_sandbox_environment_is_clean(tmp_path, monkeypatch):
    secrets = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t",
               "AWS_SESSION_TOKEN": "tok", "AWS_ENDPOINT_URL": "http://minio:9000",
               "KUBELAB_S3_BUCKET": "bucket", "JUPYTERHUB_API_TOKEN": "hubtoken",
               "PYTHONPATH": "/evil", "LD_PRELOAD": "/evil.so", "HTTPS_PROXY": "http://proxy"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    r = sandbox.run("selftest:env", str(tmp_path), timeout=30)
    assert r.ok, r.error
    env = r.report["env"]
    assert not [k for k in env if k.startswith(("AWS_", "KUBELAB_", "JUPYTERHUB_"))]
    assert set(env) == set(sandbox.clean_env("h", "t"))
    assert env["PATH"] == "/usr/bin:/bin"
    box = os.path.dirname(env["HOME"])
    assert env["TMPDIR"] == os.path.join(box, "tmp") and r.report["cwd"] == os.path.join(box, "work")
    assert not os.path.exists(box)  # removed afterwards
    assert not any(v in json.dumps(r.report) for v in secrets.values())


def test_sandbox_network_is_cut_when_it_can_be(tmp_path):
    r = sandbox.run("selftest:net", str(tmp_path), timeout=30, landlock=False)
    applied, skipped = r.isolation["applied"], r.isolation["skipped"]
    if "netns: no network" in applied:
        assert r.report["net"]["1.1.1.1:53"] == "Network is unreachable"
        assert r.report["net"]["127.0.0.1:1"] in ("Network is unreachable", "Connection refused")
    else:  # best-effort: it says why
        assert skipped["netns"].startswith("unshare(")


def test_sandbox_landlock_when_available(tmp_path):
    probe_dir = tmp_path / "model"
    probe_dir.mkdir()
    results = {k: sandbox.run(k, str(probe_dir), timeout=30)
               for k in ("selftest:write", "selftest:exec", "selftest:signal", "selftest:net")}
    iso = results["selftest:write"].isolation
    if "landlock" in iso["skipped"]:
        assert iso["skipped"]["landlock"]
        return
    writes = results["selftest:write"].report["write"]
    assert writes[str(probe_dir / "sandbox-write-probe")] == "Permission denied"
    assert [v for k, v in writes.items() if k.endswith("/tmp/probe")] == ["written"]
    assert not (probe_dir / "sandbox-write-probe").exists()
    assert results["selftest:exec"].report["exec"] == "Permission denied"
    if any(a.startswith("landlock-scope") for a in iso["applied"]):
        assert results["selftest:signal"].report["signal"] == "Operation not permitted"
    if any(a.startswith("landlock-net") for a in iso["applied"]):
        assert "connected" not in results["selftest:net"].report["net"].values()


def test_dummy_inputs():
    sig = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]},
                      {"name": "y", "datatype": "INT64", "shape": [None, "batch", 2]}]}
    feeds = sandbox.dummy_inputs(sig)
    assert feeds["x"].shape == (1, 4) and feeds["x"].dtype == np.float32 and not feeds["x"].any()
    assert feeds["y"].shape == (1, 1, 2) and feeds["y"].dtype == np.int64
    assert sandbox.dummy_inputs({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [-1]}]}) is None
    assert sandbox.dummy_inputs(None) is None
