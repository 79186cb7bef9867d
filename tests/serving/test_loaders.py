"""The loaders on real models trained in the test: signatures, predictions equal
to the framework's own, and one-line errors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings

import numpy as np
import pytest

from kubelab.server_extension.serving import loaders
from kubelab.server_extension.serving.loaders import InputError, LoadError, load, model_file


def test_sklearn(models, iris):
    m = load("sklearn", str(models.dirs["sklearn"]))
    assert m.format == "sklearn" and m.servable
    assert m.signature.inputs == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert [o["name"] for o in m.signature.outputs] == ["predict", "predict_proba"]
    assert m.signature.outputs[0] == {"name": "predict", "datatype": "INT64", "shape": [-1]}
    assert m.signature.outputs[1]["shape"] == [-1, 3]
    assert m.signature.outputs[1]["parameters"] == {"classes": [0, 1, 2]}
    assert set(m.framework_versions) >= {"scikit-learn", "numpy", "joblib"}
    assert m.warnings == []

    out = m.predict({"input-0": iris.X})
    assert list(out) == ["predict"]
    np.testing.assert_array_equal(out["predict"], models.sklearn.predict(iris.X))
    both = m.predict({"input-0": iris.X.astype(np.float32)}, ["predict", "predict_proba"])
    np.testing.assert_allclose(both["predict_proba"], models.sklearn.predict_proba(iris.X), atol=1e-6)
    # ints are fine for a float model
    assert m.predict({"input-0": np.array([[5, 3, 1, 0]])})["predict"].tolist() == [0]
    assert m.signature.to_dict() == {"inputs": m.signature.inputs, "outputs": m.signature.outputs}


def test_sklearn_feature_names(models, iris):
    m = load("sklearn", str(models.dirs["sklearn_df"]))
    assert m.file_name == "model.pkl"
    assert m.signature.inputs[0]["parameters"] == {"feature_names": iris.columns}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names"
        out = m.predict({"input-0": iris.X[:10]})
        by_column = m.predict({c: iris.X[:10, i] for i, c in enumerate(iris.columns)})
    np.testing.assert_array_equal(out["predict"], models.sklearn_df.predict(
        __import__("pandas").DataFrame(iris.X[:10], columns=iris.columns)))
    np.testing.assert_array_equal(out["predict"], by_column["predict"])
    with pytest.raises(InputError, match="missing"):
        m.predict({c: iris.X[:10, i] for i, c in enumerate(iris.columns[:3])})


def test_onnx(models, iris):
    import onnxruntime as ort

    m = load("onnx", str(models.dirs["onnx"]))
    assert m.signature.inputs == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert m.signature.outputs[0] == {"name": "output_label", "datatype": "INT64", "shape": [-1]}
    # skl2onnx's ZipMap probabilities (a sequence of maps) come out as a matrix
    assert m.signature.outputs[1]["name"] == "output_probability"
    assert m.signature.outputs[1]["datatype"] == "FP32" and m.signature.outputs[1]["shape"] == [-1, -1]
    assert "onnxruntime" in m.framework_versions
    assert m.details["producer"] == "skl2onnx"

    x32 = iris.X.astype(np.float32)
    session = ort.InferenceSession(str(models.dirs["onnx"] / "model.onnx"), providers=["CPUExecutionProvider"])
    labels, probas = session.run(None, {"input": x32})
    for key in ("input", "input-0"):
        out = m.predict({key: x32})
        np.testing.assert_array_equal(out["output_label"], labels)
        np.testing.assert_array_equal(out["output_probability"], [[p[k] for k in sorted(p)] for p in probas])
    np.testing.assert_array_equal(out["output_label"], models.sklearn.predict(iris.X))
    # FP64 is cast to the model's FP32; asking for one output runs only that one
    only = m.predict({"input": iris.X}, ["output_label"])
    assert list(only) == ["output_label"]
    np.testing.assert_array_equal(only["output_label"], labels)


def test_xgboost_classifier_json(models, iris):
    m = load("xgboost", str(models.dirs["xgboost"]))
    assert m.details["estimator"] == "XGBClassifier"
    assert m.signature.inputs == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in m.signature.outputs] == ["predict", "predict_proba"]
    assert m.signature.outputs[1]["shape"] == [-1, 3]
    out = m.predict({"input-0": iris.X}, ["predict", "predict_proba"])
    np.testing.assert_array_equal(out["predict"], models.xgb_classifier.predict(iris.X))
    np.testing.assert_allclose(out["predict_proba"], models.xgb_classifier.predict_proba(iris.X), rtol=1e-6)
    assert "xgboost" in m.framework_versions


def test_xgboost_booster_ubj(models, iris):
    import xgboost as xgb

    m = load("xgboost", str(models.dirs["xgboost_booster"]))
    assert m.file_name == "model.ubj" and m.details["estimator"] == "Booster"
    assert m.details["objective"] == "multi:softprob"
    assert m.signature.outputs == [{"name": "predict", "datatype": "FP32", "shape": [-1, 3]}]
    out = m.predict({"input-0": iris.X})
    np.testing.assert_allclose(out["predict"], models.xgb_booster.predict(xgb.DMatrix(iris.X)), rtol=1e-6)


def test_lightgbm(models, iris):
    m = load("lightgbm", str(models.dirs["lightgbm"]))
    assert m.signature.inputs[0]["shape"] == [-1, 4]
    assert m.signature.outputs == [{"name": "predict", "datatype": "FP64", "shape": [-1, 3]}]
    assert m.details["objective"] == "multiclass"
    out = m.predict({"input-0": iris.X})
    np.testing.assert_allclose(out["predict"], models.lgb_booster.predict(iris.X), rtol=1e-9)
    assert "lightgbm" in m.framework_versions


def test_safetensors_loads_but_is_not_servable(models):
    m = load("safetensors", str(models.dirs["safetensors"]))
    assert not m.servable
    assert m.signature.inputs == [] and m.signature.outputs == []
    assert sorted(t["name"] for t in m.signature.tensors) == ["layer.bias", "layer.weight"]
    assert {"name": "layer.weight", "datatype": "FP32", "shape": [3, 4]} in m.signature.tensors
    assert m.details["metadata"] == {"arch": "linear"}
    assert "tensors" in m.signature.to_dict()
    with pytest.raises(LoadError, match="safetensors holds weights only; serve it with a custom runtime"):
        m.predict({"input-0": np.zeros((1, 4))})


def test_torchscript_without_torch(tmp_path):
    # torch is not part of the serving image
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here")
    (tmp_path / "model.pt").write_bytes(b"whatever")
    with pytest.raises(LoadError) as e:
        load("torchscript", str(tmp_path))
    assert str(e.value) == "torchscript: torch is not installed in this runtime"


def _one_line(exc: LoadError) -> str:
    msg = str(exc)
    assert "\n" not in msg and len(msg) < 500, msg
    return msg


def test_model_file(tmp_path, models):
    assert model_file("onnx", str(models.dirs["onnx"])).endswith("/model.onnx")
    with pytest.raises(LoadError) as e:
        model_file("sklearn", str(tmp_path))
    assert _one_line(e.value) == f"sklearn: no model file in {tmp_path}: expected model.joblib or model.pkl"
    with pytest.raises(LoadError, match="expected model.json or model.ubj"):
        model_file("xgboost", str(tmp_path))
    with pytest.raises(LoadError, match="does not exist"):
        model_file("onnx", str(tmp_path / "nope"))
    # any single file of the format's extension will do; several are ambiguous
    (tmp_path / "iris.onnx").write_bytes(b"x")
    assert model_file("onnx", str(tmp_path)) == str(tmp_path / "iris.onnx")
    (tmp_path / "other.onnx").write_bytes(b"x")
    with pytest.raises(LoadError, match="several model files"):
        model_file("onnx", str(tmp_path))


def test_unknown_format(models):
    with pytest.raises(LoadError) as e:
        load("pytorch", str(models.dirs["onnx"]))
    assert _one_line(e.value).startswith("unknown model format 'pytorch': expected one of sklearn, xgboost")


@pytest.mark.parametrize("fmt,file,content,expected", [
    ("sklearn", "model.joblib", b"not a pickle", "sklearn: model.joblib could not be unpickled: "),
    ("sklearn", "model.pkl", None, "sklearn: model.pkl holds a builtins.dict, not an estimator with predict()"),
    ("onnx", "model.onnx", b"garbage bytes", "onnx: model.onnx is not a valid ONNX model: "),
    ("xgboost", "model.json", b"{not json", "xgboost: model.json is not a valid XGBoost model: "),
    ("lightgbm", "model.txt", b"garbage\n", "lightgbm: model.txt is not a valid LightGBM model: "),
    ("safetensors", "model.safetensors", b"\x00\x01garbage", "safetensors: model.safetensors is not a valid "),
])
def test_corrupt_file(tmp_path, fmt, file, content, expected):
    if content is None:
        import joblib

        joblib.dump({"not": "a model"}, tmp_path / file)
    else:
        (tmp_path / file).write_bytes(content)
    with pytest.raises(LoadError) as e:
        load(fmt, str(tmp_path))
    msg = _one_line(e.value)
    assert msg.startswith(expected), msg
    assert "Stack trace" not in msg and "[bt]" not in msg


def test_sklearn_missing_module(tmp_path):
    # a pickle naming a module this runtime lacks (a user's own package)
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00\x8c\x0fno_such_module_\x94\x8c\x03Foo\x94\x93\x94.")
    with pytest.raises(LoadError) as e:
        load("sklearn", str(tmp_path))
    assert _one_line(e.value) == (
        "sklearn: model.pkl needs the Python module 'no_such_module_', which this runtime does not have")


def test_input_errors(models, iris):
    sk = load("sklearn", str(models.dirs["sklearn"]))
    ox = load("onnx", str(models.dirs["onnx"]))
    with pytest.raises(InputError, match=r"shape \[150, 3\]; the model expects \[-1, 4\]"):
        ox.predict({"input": iris.X[:, :3]})
    with pytest.raises(InputError, match=r"has datatype BYTES; the model expects FP32"):
        ox.predict({"input": np.array([["a", "b", "c", "d"]], dtype=object)})
    with pytest.raises(InputError, match="unknown input 'x'; this model takes 'input'"):
        ox.predict({"x": iris.X})
    with pytest.raises(InputError, match="unknown output 'proba'"):
        ox.predict({"input": iris.X}, ["proba"])
    with pytest.raises(InputError, match=r"shape \[4\]"):
        sk.predict({"input-0": iris.X[0]})
    with pytest.raises(InputError, match="could not convert string to float"):
        sk.predict({"input-0": np.array([["a", "b", "c", "d"]], dtype=object)})
    with pytest.raises(InputError, match="no inputs"):
        sk.predict({})


def test_imports_stay_lazy(models):
    """Loading one format imports that framework only, and never a web framework."""
    code = (
        "import sys\n"
        "from kubelab.server_extension.serving import load\n"
        f"load('onnx', {str(models.dirs['onnx'])!r})\n"
        "bad = [m for m in ('xgboost', 'lightgbm', 'sklearn', 'torch', 'kserve', 'fastapi', 'tornado',"
        " 'jupyter_server') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert 'onnxruntime' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_one_line_helper():
    assert loaders.one_line("[14:27:09] /w/src/json.cc:409: Expecting x\nStack trace:\n  [bt] (0) lib") == "Expecting x"
    assert loaders.one_line("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load failed") == "Load failed"
    assert loaders.one_line("x" * 1000).endswith("...")
