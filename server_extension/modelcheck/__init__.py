"""Registration-time validation of model artifacts.

    from kubelab.server_extension.modelcheck import validate

    verdict = validate("/tmp/my-model", declared_format="onnx")
    verdict.status   # "valid" | "invalid" | "refused"
    verdict.reason   # one line
    verdict.to_dict()

- :mod:`.formats`: ``detect(model_dir)`` / ``confirm(declared, detected)``;
- :mod:`.pickles`: a static pickle scanner (never unpickles), with
  ``DEFAULT_ALLOWLIST`` / ``DEFAULT_DENYLIST``;
- :mod:`.sandbox`: loading in a locked-down child process;
- :mod:`.verdict`: ``validate`` and ``Verdict``.

No web framework is imported; ML frameworks are only imported by the
sandboxed child (and ``onnx``, when present, to parse ONNX headers).
"""
from __future__ import annotations

from .formats import FORMATS, Detected, FormatError, confirm, detect
from .pickles import DEFAULT_ALLOWLIST, DEFAULT_DENYLIST, PickleVerdict, scan

_LAZY = ("PICKLE_REFUSED", "Verdict", "validate")


def __getattr__(name: str):
    # .verdict imports .sandbox, which is also run as ``python -m ...sandbox``:
    # importing it here would put it in sys.modules before runpy executes it.
    if name in _LAZY:
        from . import verdict

        return getattr(verdict, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "DEFAULT_ALLOWLIST", "DEFAULT_DENYLIST", "FORMATS", "PICKLE_REFUSED", "Detected", "FormatError",
    "PickleVerdict", "Verdict", "confirm", "detect", "scan", "validate",
]
