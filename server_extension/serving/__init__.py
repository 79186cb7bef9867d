"""kubelab's model-serving runtime and the loaders the registry's validation reuses.

- :mod:`.loaders`: load a model directory of a given format (sklearn, xgboost,
  lightgbm, onnx, torchscript, safetensors) and predict on numpy arrays. No
  web framework; each ML framework imported only when its format is loaded.
- :mod:`.runtime`: the KServe model server (V1 + Open Inference Protocol V2,
  Prometheus metrics, drain on SIGTERM). Imports kserve.
- ``python -m kubelab.server_extension.serving --model-dir DIR --model-name NAME --format FMT``:
  what a serving Deployment's container runs.

Importing this package imports neither kserve nor any ML framework.
"""

from .loaders import FORMATS, InputError, LoadedModel, LoadError, Signature, load, model_file

__all__ = ["FORMATS", "InputError", "LoadError", "LoadedModel", "Signature", "load", "model_file"]
