"""Load a registered model from a directory and run it on numpy arrays.

This module is shared by the serving runtime (``python -m
kubelab.server_extension.serving``) and by the model registry's validation,
so a model is checked at registration with the same code that will serve it.
It imports no web framework, and each ML framework is imported only inside
its own loader: validating an ONNX model never imports xgboost.

    loaded = load("onnx", "/mnt/models")
    loaded.signature.inputs    # [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    loaded.predict({"input": x})  # {"output_label": ..., "output_probability": ...}

Errors are one line each: :class:`LoadError` when the model cannot be loaded
(or, for safetensors, cannot be run), :class:`InputError` when ``predict`` is
given inputs the model cannot take (the server answers those with HTTP 400).

Formats and the file looked for in the model directory (first match wins;
otherwise the directory's only file with one of the extensions):

=============  ==============================  =========================================
format         file                            loaded with
=============  ==============================  =========================================
sklearn        model.joblib, model.pkl         ``joblib.load`` (pickle: see :func:`load`)
xgboost        model.json, model.ubj           ``xgboost.Booster`` / ``XGBClassifier`` ...
lightgbm       model.txt                       ``lightgbm.Booster(model_file=...)``
onnx           model.onnx                      ``onnxruntime.InferenceSession`` (CPU)
torchscript    model.pt                        ``torch.jit.load`` (only where torch is installed)
safetensors    model.safetensors               header only: weights have no architecture
=============  ==============================  =========================================
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import asdict, dataclass, field
from importlib import metadata as _metadata
from typing import Any, Callable

import numpy as np

__all__ = [
    "FORMATS",
    "MODEL_FILES",
    "InputError",
    "LoadError",
    "LoadedModel",
    "Signature",
    "load",
    "model_file",
]

FORMATS = ("sklearn", "xgboost", "lightgbm", "onnx", "torchscript", "safetensors")

#: For each format: the file names looked for, in order of preference.
MODEL_FILES: dict[str, tuple[str, ...]] = {
    "sklearn": ("model.joblib", "model.pkl"),
    "xgboost": ("model.json", "model.ubj"),
    "lightgbm": ("model.txt",),
    "onnx": ("model.onnx",),
    "torchscript": ("model.pt",),
    "safetensors": ("model.safetensors",),
}

# The name a single-input model also answers to (what KServe's own servers
# and clients use when there is no better name).
DEFAULT_INPUT = "input-0"

_MAX_MESSAGE = 400


class LoadError(Exception):
    """The model cannot be loaded (or run); ``str()`` is one line naming the
    format and the file, e.g. ``onnx: model.onnx is not a valid ONNX model: ...``."""


class InputError(ValueError):
    """The inputs given to :meth:`LoadedModel.predict` do not fit the model
    (unknown or missing name, wrong shape or datatype). One line; a server
    should answer it with 400 Bad Request."""


@dataclass
class Signature:
    """What the model takes and returns, as Open Inference Protocol (V2)
    tensor metadata: each entry is ``{"name", "datatype", "shape"}`` with V2
    datatype names (``FP32``, ``FP64``, ``INT64``, ``BYTES``, ...) and ``-1``
    for a dimension of any size. An entry may carry an extra ``"parameters"``
    dict (feature names, class labels, the ONNX type, ...), which V2 model
    metadata leaves out.

    ``tensors`` is only filled for safetensors files: the stored weights,
    which are neither inputs nor outputs.
    """

    inputs: list[dict]
    outputs: list[dict]
    tensors: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form (what the registry records)."""
        d = asdict(self)
        if not d["tensors"]:
            del d["tensors"]
        return d


def _tensor(name: str, datatype: str, shape: list[int], **parameters) -> dict:
    t = {"name": str(name), "datatype": datatype, "shape": [int(d) for d in shape]}
    parameters = {k: v for k, v in parameters.items() if v is not None}
    if parameters:
        t["parameters"] = parameters
    return t


# --- datatypes ---------------------------------------------------------------

_V2_TO_NUMPY: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


#: The V2 datatypes a request may use (those numpy can hold).
V2_DATATYPES = tuple(_V2_TO_NUMPY)


def v2_datatype(dtype: Any) -> str:
    """The V2 datatype name of a numpy dtype (strings and objects are BYTES)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OUS":
        return "BYTES"
    for name, np_type in _V2_TO_NUMPY.items():
        if name != "BYTES" and dtype == np.dtype(np_type):
            return name
    return "BYTES"


def numpy_dtype(datatype: str) -> Any:
    """The numpy dtype of a V2 datatype name (None when numpy has none, e.g. BF16)."""
    t = _V2_TO_NUMPY.get(datatype)
    return None if t is None else np.dtype(t)


# ONNX element types ("tensor(float)") -> V2.
_ONNX_TO_V2 = {
    "float": "FP32",
    "double": "FP64",
    "float16": "FP16",
    "bfloat16": "BF16",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "bool": "BOOL",
    "string": "BYTES",
}

# safetensors dtypes -> V2 (others are kept as safetensors spells them).
_SAFETENSORS_TO_V2 = {
    "F64": "FP64",
    "F32": "FP32",
    "F16": "FP16",
    "BF16": "BF16",
    "I64": "INT64",
    "I32": "INT32",
    "I16": "INT16",
    "I8": "INT8",
    "U64": "UINT64",
    "U32": "UINT32",
    "U16": "UINT16",
    "U8": "UINT8",
    "BOOL": "BOOL",
}


# --- messages ----------------------------------------------------------------

# "[14:27:09] /__w/xgboost/xgboost/src/common/json.cc:409: " (xgboost's C++ prefix)
_CPP_PREFIX = re.compile(r"^\[\d\d:\d\d:\d\d\]\s+\S+:\d+:\s*")
# "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : "
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")


def one_line(exc: BaseException | str, limit: int = _MAX_MESSAGE) -> str:
    """A framework's (often multi-line, stack-traced) error as one short line."""
    text = exc if isinstance(exc, str) else str(exc)
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith(("Stack trace:", "[bt]", "Traceback")):
            break
        lines.append(line)
    text = " ".join(lines)
    text = _ORT_PREFIX.sub("", _CPP_PREFIX.sub("", text))
    text = re.sub(r"\s+", " ", text).strip()
    if not text and not isinstance(exc, str):
        text = type(exc).__name__
    elif not isinstance(exc, str) and isinstance(exc, (KeyError, ModuleNotFoundError, EOFError)):
        text = f"{type(exc).__name__}: {text}"
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def _versions(*dists: str) -> dict[str, str]:
    out = {}
    for dist in dists:
        try:
            out[dist] = _metadata.version(dist)
        except _metadata.PackageNotFoundError:
            pass
    return out


def _jsonable(values) -> list:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


# --- the model ---------------------------------------------------------------


class LoadedModel:
    """A model ready to predict. What the server (and registry validation) uses.

    Attributes:
        format: one of :data:`FORMATS`.
        path: the file it was loaded from.
        framework_versions: the runtime's versions, e.g. ``{"scikit-learn": "1.9.1", "numpy": "2.4.6"}``.
        signature: inputs/outputs as V2 tensor metadata, or None when the format cannot tell.
        warnings: one-line warnings raised while loading (e.g. scikit-learn's
            "trained with another version" warning), for the registry to show.
        details: format-specific facts worth recording (objective, producer, ...).
    """

    format: str = ""
    #: False where the model can be described but not run here (safetensors).
    servable: bool = True

    def __init__(self, path: str, framework_versions: dict[str, str],
                 signature: Signature | None, details: dict | None = None,
                 load_warnings: list[str] | None = None):
        self.path = path
        self.framework_versions = framework_versions
        self.signature = signature
        self.details = details or {}
        self.warnings = load_warnings or []

    @property
    def file_name(self) -> str:
        return os.path.basename(self.path)

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.signature.outputs] if self.signature else []

    def predict(self, inputs: dict[str, np.ndarray],
                outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run the model on ``inputs`` (by input name; a single-input model also
        takes ``{"input-0": arr}``) and return its outputs by name.

        ``outputs`` names the outputs wanted; the default is the model's
        default outputs (for scikit-learn: ``predict`` only, ask for
        ``predict_proba`` to get probabilities). Raises :class:`InputError`
        for inputs that do not fit the model.
        """
        if not isinstance(inputs, dict) or not inputs:
            raise InputError("no inputs given")
        if outputs is not None:
            unknown = [o for o in outputs if o not in self.output_names]
            if unknown and self.signature is not None:
                raise InputError(
                    f"unknown output {unknown[0]!r}; this model has {', '.join(self.output_names)}")
        return self._predict(inputs, outputs)

    def _predict(self, inputs, outputs):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.format} {self.path}>"

    # -- helpers for subclasses --

    def _single(self, inputs: dict[str, np.ndarray]) -> tuple[str, Any]:
        """The one input of a single-input model, whatever it was called."""
        expected = self.signature.inputs[0]["name"] if self.signature and self.signature.inputs else DEFAULT_INPUT
        if len(inputs) != 1:
            raise InputError(
                f"this model takes one input ({expected!r}); got {len(inputs)}: {', '.join(map(repr, inputs))}")
        name, value = next(iter(inputs.items()))
        if name not in (expected, DEFAULT_INPUT):
            raise InputError(f"unknown input {name!r}; this model takes {expected!r}")
        return expected, value


def _as_array(name: str, value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"input {name!r} is not a rectangular array: {one_line(exc)}") from None


def _check_shape(name: str, arr: np.ndarray, shape: list[int]) -> None:
    if len(arr.shape) != len(shape) or any(
            want >= 0 and got != want for got, want in zip(arr.shape, shape)):
        raise InputError(
            f"input {name!r} has shape {list(arr.shape)}; the model expects {shape} (-1: any size)")


def _cast(name: str, arr: np.ndarray, datatype: str) -> np.ndarray:
    """Cast to the model's datatype where no meaning is lost in kind
    (FP64 -> FP32, INT64 -> FP32 are fine; FP32 -> INT64, BYTES -> FP32 are not)."""
    want = numpy_dtype(datatype)
    if want is None or arr.dtype == want:
        return arr
    if want == np.object_:
        if arr.dtype.kind in "OUS":
            return arr.astype(object)
    elif arr.dtype.kind != "O" and np.can_cast(arr.dtype, want, casting="same_kind"):
        return arr.astype(want)
    elif arr.dtype.kind == "b" and want.kind in "iuf":
        return arr.astype(want)
    raise InputError(
        f"input {name!r} has datatype {v2_datatype(arr.dtype)}; the model expects {datatype}")


def _framework_call(fn: Callable[[], Any], input_errors: tuple = ()) -> Any:
    """Run a framework's predict; its complaints about the inputs become InputError."""
    try:
        return fn()
    except (ValueError, TypeError, *input_errors) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(one_line(exc)) from None


# --- scikit-learn --------------------------------------------------------------


class _SklearnModel(LoadedModel):
    format = "sklearn"

    def __init__(self, estimator, path, versions, load_warnings):
        self.estimator = estimator
        n = getattr(estimator, "n_features_in_", None)
        names = getattr(estimator, "feature_names_in_", None)
        self.feature_names = [str(f) for f in names] if names is not None else None
        inputs = [_tensor(DEFAULT_INPUT, "FP64", [-1, int(n) if n is not None else -1],
                          feature_names=self.feature_names)]
        classes = getattr(estimator, "classes_", None)
        if classes is not None:
            try:
                classes = np.asarray(classes)
            except ValueError:  # multi-output classifiers: one array per output
                classes = None
        n_outputs = getattr(estimator, "n_outputs_", 1)
        multi = isinstance(n_outputs, (int, np.integer)) and n_outputs > 1
        if classes is not None and classes.ndim == 1 and not multi:
            predict = _tensor("predict", v2_datatype(classes.dtype), [-1])
        else:  # regressors (and what we cannot tell): numbers, one column per output
            classes = None
            predict = _tensor("predict", "FP64", [-1, int(n_outputs)] if multi else [-1])
        outputs = [predict]
        if hasattr(estimator, "predict_proba"):
            outputs.append(_tensor(
                "predict_proba", "FP64", [-1, len(classes) if classes is not None else -1],
                classes=_jsonable(classes) if classes is not None else None))
        details = {"estimator": f"{type(estimator).__module__}.{type(estimator).__qualname__}"}
        super().__init__(path, versions, Signature(inputs, outputs), details, load_warnings)
        if n is not None:
            self._probe(int(n))

    def _probe(self, n: int) -> None:
        """Predict one row of zeros to learn the outputs' real datatype and shape
        (n_outputs_, a regressor's 2-D target, a clusterer's INT32 labels...).
        Estimators that cannot take zeros (string categories) keep the guess."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = self._predict({DEFAULT_INPUT: np.zeros((1, n))}, [o["name"] for o in self.signature.outputs])
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            self.details["probe_error"] = one_line(exc)
            return
        for out in self.signature.outputs:
            arr = got.get(out["name"])
            if arr is not None:
                out["datatype"] = v2_datatype(arr.dtype)
                out["shape"] = [-1, *[int(d) for d in arr.shape[1:]]]

    def _matrix(self, inputs):
        # A model fitted on a DataFrame also takes one 1-D input per column.
        if self.feature_names and DEFAULT_INPUT not in inputs and (
                len(inputs) > 1 or set(inputs) <= set(self.feature_names)):
            missing = [f for f in self.feature_names if f not in inputs]
            extra = [k for k in inputs if k not in self.feature_names]
            if missing or extra:
                raise InputError(
                    f"per-column inputs must be exactly the features {self.feature_names}; "
                    + (f"missing {missing}" if missing else f"unknown {extra}"))
            import pandas as pd

            cols = {f: _as_array(f, inputs[f]) for f in self.feature_names}
            for f, col in cols.items():
                if col.ndim != 1:
                    raise InputError(f"per-column input {f!r} must be 1-D; got shape {list(col.shape)}")
            if len({len(c) for c in cols.values()}) != 1:
                raise InputError("per-column inputs have different lengths")
            return pd.DataFrame(cols)
        name, value = self._single(inputs)
        arr = _as_array(name, value)
        _check_shape(name, arr, self.signature.inputs[0]["shape"])
        if arr.dtype.kind in "biu":
            arr = arr.astype(np.float64)
        if self.feature_names:
            import pandas as pd

            return pd.DataFrame(arr, columns=self.feature_names)
        return arr

    def _predict(self, inputs, outputs):
        x = self._matrix(inputs)
        result = {"predict": np.asarray(_framework_call(lambda: self.estimator.predict(x)))}
        if outputs and "predict_proba" in outputs:
            proba = _framework_call(lambda: self.estimator.predict_proba(x))
            if isinstance(proba, list):  # multi-output: one [n, classes] array per output
                try:
                    proba = np.stack(proba, axis=1)
                except ValueError:
                    raise LoadError("sklearn: predict_proba of outputs with different class counts "
                                    "cannot be one tensor") from None
            result["predict_proba"] = np.asarray(proba)
        if outputs:
            result = {k: v for k, v in result.items() if k in outputs}
        return result


def _load_sklearn(path: str) -> LoadedModel:
    import joblib
    import sklearn

    name = os.path.basename(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            estimator = joblib.load(path)
        except ModuleNotFoundError as exc:
            raise LoadError(
                f"sklearn: {name} needs the Python module {exc.name!r}, which this runtime does not have") from None
        except Exception as exc:
            raise LoadError(f"sklearn: {name} could not be unpickled: {type(exc).__name__}: {one_line(exc)}") from None
    if not callable(getattr(estimator, "predict", None)):
        raise LoadError(
            f"sklearn: {name} holds a {type(estimator).__module__}.{type(estimator).__qualname__}, "
            "not an estimator with predict()")
    load_warnings = [one_line(str(w.message)) for w in caught
                     if not issubclass(w.category, DeprecationWarning)]
    versions = {"scikit-learn": sklearn.__version__, "joblib": joblib.__version__,
                "numpy": np.__version__}
    return _SklearnModel(estimator, path, versions, load_warnings)


# --- xgboost -------------------------------------------------------------------


class _XGBoostModel(LoadedModel):
    format = "xgboost"

    def __init__(self, booster, wrapper, estimator_type, path, versions):
        self.booster = booster
        self.wrapper = wrapper  # XGBClassifier/XGBRegressor... or None
        config = json.loads(booster.save_config())
        learner = config.get("learner", {})
        params = learner.get("learner_model_param", {})
        objective = learner.get("objective", {}).get("name", "")
        num_class = int(params.get("num_class", "0") or 0)
        n = booster.num_features()
        names = booster.feature_names
        inputs = [_tensor(DEFAULT_INPUT, "FP32", [-1, n], feature_names=list(names) if names else None)]
        if wrapper is not None and estimator_type == "classifier":
            classes = getattr(wrapper, "classes_", None)
            outputs = [_tensor("predict", "INT64", [-1]),
                       _tensor("predict_proba", "FP32", [-1, max(num_class, 2)],
                               classes=_jsonable(classes) if classes is not None else None)]
        else:
            shape = [-1, num_class] if num_class > 1 and objective != "multi:softmax" else [-1]
            outputs = [_tensor("predict", "FP32", shape)]
        details = {"objective": objective, "num_class": num_class,
                   "estimator": type(wrapper).__name__ if wrapper is not None else "Booster"}
        super().__init__(path, versions, Signature(inputs, outputs), details)

    def _predict(self, inputs, outputs):
        import xgboost as xgb

        name, value = self._single(inputs)
        arr = _cast(name, _as_array(name, value), "FP32")
        _check_shape(name, arr, self.signature.inputs[0]["shape"])
        errors = (xgb.core.XGBoostError,)
        if self.wrapper is not None:
            result = {"predict": np.asarray(_framework_call(lambda: self.wrapper.predict(arr), errors))}
            if outputs and "predict_proba" in outputs:
                result["predict_proba"] = np.asarray(
                    _framework_call(lambda: self.wrapper.predict_proba(arr), errors))
        else:
            dmatrix = _framework_call(
                lambda: xgb.DMatrix(arr, feature_names=self.booster.feature_names), errors)
            result = {"predict": np.asarray(_framework_call(lambda: self.booster.predict(dmatrix), errors))}
        if outputs:
            result = {k: v for k, v in result.items() if k in outputs}
        return result


def _load_xgboost(path: str) -> LoadedModel:
    import xgboost as xgb

    name = os.path.basename(path)
    try:
        booster = xgb.Booster(model_file=path)
    except Exception as exc:
        raise LoadError(f"xgboost: {name} is not a valid XGBoost model: {one_line(exc)}") from None
    # XGBClassifier/XGBRegressor.save_model() records which sklearn wrapper it
    # was; reloading through that wrapper gives predict() its labels.
    wrapper = None
    try:
        estimator_type = json.loads(booster.attr("scikit_learn") or "{}").get("_estimator_type")
    except ValueError:
        estimator_type = None
    if estimator_type in ("classifier", "regressor"):
        try:
            wrapper = (xgb.XGBClassifier if estimator_type == "classifier" else xgb.XGBRegressor)()
            wrapper.load_model(path)
            booster = wrapper.get_booster()
        except Exception:  # e.g. scikit-learn missing: serve the bare Booster
            wrapper = None
    return _XGBoostModel(booster, wrapper, estimator_type, path,
                         {"xgboost": xgb.__version__, "numpy": np.__version__})


# --- lightgbm ------------------------------------------------------------------


class _LightGBMModel(LoadedModel):
    format = "lightgbm"

    def __init__(self, booster, path, versions):
        self.booster = booster
        k = booster.num_model_per_iteration()
        names = booster.feature_name()
        params = getattr(booster, "params", None) or {}
        inputs = [_tensor(DEFAULT_INPUT, "FP64", [-1, booster.num_feature()],
                          feature_names=list(names) if names else None)]
        outputs = [_tensor("predict", "FP64", [-1, k] if k > 1 else [-1])]
        details = {"objective": str(params.get("objective", "")), "num_class": int(params.get("num_class", 1) or 1)}
        super().__init__(path, versions, Signature(inputs, outputs), details)

    def _predict(self, inputs, outputs):
        import lightgbm as lgb

        name, value = self._single(inputs)
        arr = _cast(name, _as_array(name, value), "FP64")
        _check_shape(name, arr, self.signature.inputs[0]["shape"])
        return {"predict": np.asarray(
            _framework_call(lambda: self.booster.predict(arr), (lgb.basic.LightGBMError,)))}


def _load_lightgbm(path: str) -> LoadedModel:
    import lightgbm as lgb

    name = os.path.basename(path)
    try:
        booster = lgb.Booster(model_file=path)
    except Exception as exc:
        raise LoadError(f"lightgbm: {name} is not a valid LightGBM model: {one_line(exc)}") from None
    return _LightGBMModel(booster, path, {"lightgbm": lgb.__version__, "numpy": np.__version__})


# --- onnx ----------------------------------------------------------------------


def _onnx_datatype(onnx_type: str) -> str:
    m = re.fullmatch(r"tensor\((\w+)\)", onnx_type)
    if m:
        return _ONNX_TO_V2.get(m.group(1), "BYTES")
    # seq(map(int64,tensor(float))): skl2onnx's ZipMap probabilities, served
    # as an [n, classes] matrix with the classes in key order.
    m = re.fullmatch(r"seq\(map\(\w+,tensor\((\w+)\)\)\)", onnx_type)
    if m:
        return _ONNX_TO_V2.get(m.group(1), "BYTES")
    return "BYTES"


def _onnx_shape(shape, onnx_type: str) -> list[int]:
    if onnx_type.startswith("seq(map("):
        return [-1, -1]
    return [d if isinstance(d, int) and d >= 0 else -1 for d in (shape or [])]


def _onnx_output(value: Any, onnx_type: str) -> np.ndarray:
    if onnx_type.startswith("seq(map(") and isinstance(value, list):
        if not value:
            return np.zeros((0, 0), dtype=np.float32)
        keys = sorted(value[0])
        return np.asarray([[row[k] for k in keys] for row in value], dtype=np.float32)
    return np.asarray(value)


class _OnnxModel(LoadedModel):
    format = "onnx"

    def __init__(self, session, path, versions):
        self.session = session
        self._types = {}
        inputs, outputs = [], []
        for arg in session.get_inputs():
            inputs.append(_tensor(arg.name, _onnx_datatype(arg.type), _onnx_shape(arg.shape, arg.type)))
        for arg in session.get_outputs():
            self._types[arg.name] = arg.type
            parameters = {"onnx_type": arg.type} if not arg.type.startswith("tensor(") else {}
            outputs.append(_tensor(arg.name, _onnx_datatype(arg.type), _onnx_shape(arg.shape, arg.type),
                                   **parameters))
        meta = session.get_modelmeta()
        details = {"producer": " ".join(filter(None, [meta.producer_name, getattr(meta, "version", "")])).strip()
                   if meta.producer_name else "",
                   "graph": meta.graph_name}
        super().__init__(path, versions, Signature(inputs, outputs), details)

    def _predict(self, inputs, outputs):
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

        spec = {t["name"]: t for t in self.signature.inputs}
        if len(spec) == 1:
            name, value = self._single(inputs)
            given = {name: value}
        else:
            unknown = [k for k in inputs if k not in spec]
            missing = [k for k in spec if k not in inputs]
            if unknown:
                raise InputError(f"unknown input {unknown[0]!r}; this model takes {', '.join(spec)}")
            if missing:
                raise InputError(f"missing input {missing[0]!r}; this model takes {', '.join(spec)}")
            given = inputs
        feed = {}
        for name, value in given.items():
            arr = _cast(name, _as_array(name, value), spec[name]["datatype"])
            _check_shape(name, arr, spec[name]["shape"])
            feed[name] = arr
        names = list(outputs) if outputs else self.output_names
        values = _framework_call(lambda: self.session.run(names, feed),
                                 (ort_state.InvalidArgument,))
        return {n: _onnx_output(v, self._types[n]) for n, v in zip(names, values)}


def _load_onnx(path: str) -> LoadedModel:
    import onnxruntime as ort

    name = os.path.basename(path)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no warnings on stderr
    try:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise LoadError(f"onnx: {name} is not a valid ONNX model: {one_line(exc)}") from None
    versions = {"onnxruntime": ort.__version__, "numpy": np.__version__}
    versions.update(_versions("onnx"))
    return _OnnxModel(session, path, versions)


# --- torchscript -----------------------------------------------------------------


class _TorchScriptModel(LoadedModel):
    """Positional tensors in, tensor(s) out. The signature is unknown (None):
    TorchScript does not record input shapes. (Untested here: the serving
    image has no torch.)"""

    format = "torchscript"

    def __init__(self, module, path, versions):
        self.module = module
        super().__init__(path, versions, None)

    def _predict(self, inputs, outputs):
        import torch

        tensors = [torch.from_numpy(np.ascontiguousarray(_as_array(k, v))) for k, v in inputs.items()]
        with torch.inference_mode():
            result = _framework_call(lambda: self.module(*tensors), (RuntimeError,))
        if isinstance(result, (list, tuple)):
            return {f"output-{i}": r.detach().cpu().numpy() for i, r in enumerate(result)}
        if isinstance(result, dict):
            return {str(k): v.detach().cpu().numpy() for k, v in result.items()}
        return {"output-0": result.detach().cpu().numpy()}


def _load_torchscript(path: str) -> LoadedModel:
    name = os.path.basename(path)
    try:
        import torch
    except ImportError:
        raise LoadError("torchscript: torch is not installed in this runtime") from None
    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception as exc:
        raise LoadError(f"torchscript: {name} is not a valid TorchScript model: {one_line(exc)}") from None
    module.eval()
    return _TorchScriptModel(module, path, {"torch": torch.__version__, "numpy": np.__version__})


# --- safetensors -----------------------------------------------------------------


class _SafetensorsModel(LoadedModel):
    """Weights only: no architecture to run them with. Loading reads the
    header (the tensors' names, dtypes and shapes go into
    ``signature.tensors``, the header's ``__metadata__`` into ``details``)
    so that registration can record them; ``predict`` raises LoadError."""

    format = "safetensors"
    servable = False
    NOT_SERVABLE = "safetensors holds weights only; serve it with a custom runtime"

    def _predict(self, inputs, outputs):
        raise LoadError(f"safetensors: {self.NOT_SERVABLE}")


def _load_safetensors(path: str) -> LoadedModel:
    import safetensors
    from safetensors import safe_open

    name = os.path.basename(path)
    tensors = []
    try:
        with safe_open(path, framework="numpy") as f:
            header_metadata = f.metadata() or {}
            for key in f.keys():
                s = f.get_slice(key)
                tensors.append(_tensor(key, _SAFETENSORS_TO_V2.get(s.get_dtype(), s.get_dtype()),
                                       list(s.get_shape())))
    except Exception as exc:
        raise LoadError(f"safetensors: {name} is not a valid safetensors file: {one_line(exc)}") from None
    versions = {"safetensors": getattr(safetensors, "__version__", "") or _versions("safetensors").get("safetensors", "")}
    return _SafetensorsModel(path, versions, Signature([], [], tensors),
                             {"metadata": dict(header_metadata), "tensor_count": len(tensors)})


_LOADERS: dict[str, Callable[[str], LoadedModel]] = {
    "sklearn": _load_sklearn,
    "xgboost": _load_xgboost,
    "lightgbm": _load_lightgbm,
    "onnx": _load_onnx,
    "torchscript": _load_torchscript,
    "safetensors": _load_safetensors,
}


# --- public API ------------------------------------------------------------------


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise LoadError(f"unknown model format {fmt!r}: expected one of {', '.join(FORMATS)}")


def model_file(fmt: str, model_dir: str) -> str:
    """The path of the file to load for ``fmt`` in ``model_dir``: the first of
    :data:`MODEL_FILES` present, else the directory's only file with one of
    those extensions. LoadError (naming what was expected) if there is none,
    or several candidates and none of the standard names."""
    _check_format(fmt)
    if not os.path.isdir(model_dir):
        raise LoadError(f"{fmt}: model directory {model_dir} does not exist")
    names = MODEL_FILES[fmt]
    for n in names:
        p = os.path.join(model_dir, n)
        if os.path.isfile(p):
            return p
    exts = tuple(os.path.splitext(n)[1] for n in names)
    found = sorted(n for n in os.listdir(model_dir)
                   if n.endswith(exts) and os.path.isfile(os.path.join(model_dir, n)))
    expected = " or ".join(names)
    if len(found) == 1:
        return os.path.join(model_dir, found[0])
    if found:
        raise LoadError(f"{fmt}: {model_dir} has several model files ({', '.join(found)}); "
                        f"name the one to serve {names[0]}")
    raise LoadError(f"{fmt}: no model file in {model_dir}: expected {expected}")


def load(fmt: str, model_dir: str) -> LoadedModel:
    """Load the model of format ``fmt`` from ``model_dir`` (see :func:`model_file`).

    Raises :class:`LoadError` (one line) on an unknown format, a missing or
    unreadable file, or a framework that is not installed.

    .. warning:: ``sklearn`` models are pickles (``joblib.load``): loading
       one runs whatever code the pickle names. The CALLER is responsible
       for scanning the file (e.g. for disallowed globals) before calling
       this, and for loading only files from a trusted store. The other
       formats are data-only (JSON/UBJ, LightGBM text, ONNX protobuf,
       safetensors); TorchScript is code-carrying but sandboxed to TorchScript.

    ``safetensors`` loads (the signature lists the stored tensors) but is
    not servable: ``servable`` is False and ``predict`` raises LoadError.
    """
    _check_format(fmt)
    path = model_file(fmt, model_dir)
    return _LOADERS[fmt](path)
