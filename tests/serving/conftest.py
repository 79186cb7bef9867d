"""Tiny real models (trained here) and a real serving process on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests

SERVING = "kubelab.server_extension.serving"


@dataclass
class Iris:
    X: np.ndarray  # (150, 4) float64
    y: np.ndarray  # (150,) int64
    columns: list[str]


@pytest.fixture(scope="session")
def iris() -> Iris:
    from sklearn.datasets import load_iris  # bundled with scikit-learn: no download

    data = load_iris()
    return Iris(np.asarray(data.data, dtype=np.float64), np.asarray(data.target, dtype=np.int64),
                ["sepal_length", "sepal_width", "petal_length", "petal_width"])


@dataclass
class Models:
    root: Path
    sklearn: object = None          # the fitted LogisticRegression
    sklearn_df: object = None       # the same fitted on a DataFrame (feature names)
    xgb_classifier: object = None
    xgb_booster: object = None
    lgb_booster: object = None
    dirs: dict[str, Path] = field(default_factory=dict)


@pytest.fixture(scope="session")
def models(iris, tmp_path_factory) -> Models:
    """One directory per model, laid out as the registry stores them."""
    import joblib
    import lightgbm as lgb
    import pandas as pd
    import xgboost as xgb
    from safetensors.numpy import save_file
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("models")
    m = Models(root)

    def d(name: str) -> Path:
        p = root / name
        p.mkdir()
        m.dirs[name] = p
        return p

    m.sklearn = LogisticRegression(max_iter=1000).fit(iris.X, iris.y)
    joblib.dump(m.sklearn, d("sklearn") / "model.joblib")

    m.sklearn_df = LogisticRegression(max_iter=1000).fit(pd.DataFrame(iris.X, columns=iris.columns), iris.y)
    joblib.dump(m.sklearn_df, d("sklearn_df") / "model.pkl")

    onx = to_onnx(m.sklearn, initial_types=[("input", FloatTensorType([None, 4]))])
    (d("onnx") / "model.onnx").write_bytes(onx.SerializeToString())

    m.xgb_classifier = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(iris.X, iris.y)
    m.xgb_classifier.save_model(d("xgboost") / "model.json")

    m.xgb_booster = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3},
                              xgb.DMatrix(iris.X, label=iris.y), num_boost_round=8)
    m.xgb_booster.save_model(d("xgboost_booster") / "model.ubj")

    m.lgb_booster = lgb.LGBMClassifier(n_estimators=8, num_leaves=7, verbose=-1).fit(iris.X, iris.y).booster_
    m.lgb_booster.save_model(d("lightgbm") / "model.txt")

    save_file({"layer.weight": np.ones((3, 4), np.float32), "layer.bias": np.zeros(3, np.float32)},
              str(d("safetensors") / "model.safetensors"), metadata={"arch": "linear"})
    return m


# --- the server process ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m kubelab.server_extension.serving`` as a child process."""

    def __init__(self, model_dir: Path, name: str, fmt: str, *extra: str, log_dir: Path):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", SERVING, "--model-dir", str(model_dir), "--model-name", name,
             "--format", fmt, "--http-port", str(self.port), *extra],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.start_seconds: float | None = None

    def wait_ready(self, timeout: float = 60) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/v2/models/{self.name}/ready", timeout=1).status_code == 200:
                    self.start_seconds = time.monotonic() - self.started
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"server not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def start_server(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("server-logs")
    servers: list[Server] = []

    def start(model_dir: Path, name: str, fmt: str, *extra: str) -> Server:
        s = Server(model_dir, name, fmt, *extra, log_dir=log_dir)
        servers.append(s)
        return s.wait_ready()

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def sklearn_server(models, start_server) -> Server:
    return start_server(models.dirs["sklearn"], "iris-sk", "sklearn", "--drain-seconds", "0")


@pytest.fixture(scope="module")
def onnx_server(models, start_server) -> Server:
    return start_server(models.dirs["onnx"], "iris", "onnx", "--drain-seconds", "0")
