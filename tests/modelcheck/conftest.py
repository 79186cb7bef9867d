"""Real model artifacts for the modelcheck tests, and malicious pickles.

Every malicious payload here is live: ``control`` loads a copy in a
throw-away subprocess and checks that its marker file appears, so a test that
sees no marker after validation proves the validator stopped it, not that the
payload was broken.
"""
from __future__ import annotations

import builtins
import io
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# -- benign models -------------------------------------------------------------------


@pytest.fixture(scope="session")
def data():
    rng = np.random.default_rng(0)
    X = rng.random((120, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 1).astype(int)
    return X, y


@pytest.fixture(scope="session")
def logreg(data):
    from sklearn.linear_model import LogisticRegression

    X, y = data
    return LogisticRegression().fit(X, y)


def model_dir(root: Path, name: str) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory, data, logreg):
    """One directory per artifact, built once per session."""
    import joblib
    import lightgbm
    import xgboost
    from skl2onnx import to_onnx

    X, y = data
    root = tmp_path_factory.mktemp("models")
    out = {}

    d = model_dir(root, "joblib")
    joblib.dump(logreg, d / "model.joblib")
    out["joblib"] = d

    d = model_dir(root, "joblib-z3")
    joblib.dump(logreg, d / "model.joblib", compress=3)
    out["joblib-z3"] = d

    d = model_dir(root, "pickle")
    with open(d / "model.pkl", "wb") as f:
        pickle.dump(logreg, f)
    out["pickle"] = d

    d = model_dir(root, "onnx")
    (d / "model.onnx").write_bytes(to_onnx(logreg, X[:1]).SerializeToString())
    out["onnx"] = d

    d = model_dir(root, "onnx-truncated")
    full = (out["onnx"] / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(full[: len(full) // 2])
    out["onnx-truncated"] = d

    d = model_dir(root, "xgboost")
    xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y).save_model(d / "model.json")
    out["xgboost"] = d

    d = model_dir(root, "lightgbm")
    lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y).booster_.save_model(d / "model.txt")
    out["lightgbm"] = d

    d = model_dir(root, "safetensors")
    from safetensors.numpy import save_file

    save_file({"w": np.zeros((4, 2), np.float32)}, str(d / "model.safetensors"))
    out["safetensors"] = d
    return out


# -- malicious payloads ----------------------------------------------------------------

class OsSystem:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Popen:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (subprocess.Popen, (["touch", self.marker],))


class Eval:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.eval, (f"open({self.marker!r}, 'w').close()",))


def _sbu(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def stack_global_concat(marker) -> bytes:
    """Protocol 4: STACK_GLOBAL whose module is computed at load time
    (_operator.add('o', 's') -> 'os'), then os.system('touch marker')."""
    return (b"\x80\x04"
            + _sbu("_operator") + _sbu("add") + b"\x93"
            + _sbu("o") + _sbu("s") + b"\x86" + b"R"
            + _sbu("system") + b"\x93"
            + _sbu(f"touch {marker}") + b"\x85" + b"R" + b".")


def stack_global_memo(marker) -> bytes:
    """Protocol 4: the module and name strings are memoized first and fetched
    with BINGET (as pickle writes repeated names), then STACK_GLOBAL."""
    return (b"\x80\x04"
            + _sbu("posix") + b"\x94" + _sbu("system") + b"\x94" + b"0" + b"0"
            + b"h\x00" + b"h\x01" + b"\x93"
            + _sbu(f"touch {marker}") + b"\x85" + b"R" + b".")


def frame_hidden_joblib(marker) -> bytes:
    """A joblib file that fools a scanner which knows joblib's array buffers
    but not pickle framing: the NumpyArrayWrapper is BUILT in the middle of a
    FRAME. joblib reads the array bytes from the file *after* the frame, then
    runs the rest of the frame (posix.system); a frame-unaware scanner skips
    the rest of the frame as "array data" and then reads the real array bytes
    (all NONE opcodes) as harmless opcodes."""
    evil = _sbu("posix") + _sbu("system") + b"\x93" + _sbu(f"touch {marker}") + b"\x85R0"
    n = len(evil)
    body = (_sbu("joblib.numpy_pickle") + _sbu("NumpyArrayWrapper") + b"\x93" + b")\x81"
            + b"}("
            + _sbu("subclass") + _sbu("numpy") + _sbu("ndarray") + b"\x93"
            + _sbu("shape") + b"J" + struct.pack("<i", n) + b"\x85"
            + _sbu("order") + _sbu("C")
            + _sbu("dtype") + _sbu("numpy") + _sbu("dtype") + b"\x93" + _sbu("u1") + b"\x89\x88\x87R"
            + _sbu("allow_mmap") + b"\x89"
            + b"u" + b"b"
            + evil)
    return b"\x80\x04" + b"\x95" + struct.pack("<Q", len(body)) + body + b"N" * n + b"."


def joblib_bytes(obj, **kw) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(obj, buf, **kw)
    return buf.getvalue()


PAYLOADS = {
    # name -> (bytes factory(marker), the refused entry, what the reason says)
    "os.system": (lambda m: pickle.dumps(OsSystem(m), protocol=4), "posix.system",
                  "imports posix.system (denylisted (posix))"),
    "os.system-proto0": (lambda m: pickle.dumps(OsSystem(m), protocol=0), "posix.system",
                         "imports posix.system (denylisted (posix))"),
    "subprocess.Popen": (lambda m: pickle.dumps(Popen(m), protocol=5), "subprocess.Popen",
                         "imports subprocess.Popen (denylisted (subprocess))"),
    "builtins.eval": (lambda m: pickle.dumps(Eval(m), protocol=2), "builtins.eval",
                      "imports builtins.eval (denylisted (builtins.eval))"),
    "stack-global-concat": (stack_global_concat, "<unresolved STACK_GLOBAL>",
                            "STACK_GLOBAL takes its module/name from a computed value, not a constant string"),
    "stack-global-memo": (stack_global_memo, "posix.system", "imports posix.system (denylisted (posix))"),
}


def control(payload: bytes, tmp_path: Path, loader: str = "pickle") -> None:
    """Prove a payload is live: load it in a subprocess; its marker must appear.
    (Called with a payload built for a control marker, never the test's one.)"""
    f = tmp_path / "control-payload"
    f.write_bytes(payload)
    code = ("import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))" if loader == "pickle"
            else "import joblib, sys; joblib.load(sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, timeout=60)
