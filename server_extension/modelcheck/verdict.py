"""``validate(model_dir)``: the registration-time check of a model artifact.

Order (each step can end it; nothing is ever stored by this module):

1. detect the format from names and content, and confirm it against the
   declared one -> ``invalid`` ("you said onnx but model.pkl is a pickle",
   "no supported model file found ...; supported formats: ...");
2. pickles (an sklearn model, or any file holding pickle data): refused
   unless ``allow_pickle``; if allowed, every pickle is scanned statically
   (:mod:`.pickles`) and any global outside the allowlist -> ``refused``
   naming them, and nothing is loaded. TorchScript archives' own pickles are
   always scanned (TorchScript reads them with its C++ unpickler, which
   cannot import Python code, so they are not subject to ``allow_pickle``);
3. load in the sandbox (:mod:`.sandbox`) with the serving runtime's loader
   and one test prediction -> ``invalid`` with the loader's one-line reason,
   "timed out", "ran out of memory", ... or ``valid`` with the signature and
   framework versions.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from . import formats, pickles, sandbox

PICKLE_REFUSED = ("pickle-based models are refused by this platform's configuration"
                  " (c.ModelService.allow_pickle)")

STATUSES = ("valid", "invalid", "refused")


def runtime_version() -> str:
    try:
        from kubelab import __version__
    except ImportError:  # pragma: no cover - the package is always there
        __version__ = "unknown"
    return f"kubelab-serving {__version__}"


@dataclass
class Verdict:
    status: str                                   # "valid" | "invalid" | "refused"
    format: str | None
    reason: str
    framework_versions: dict = field(default_factory=dict)
    signature: dict | None = None
    pickle: pickles.PickleVerdict | None = None
    checked_at: str = ""
    runtime: str = ""
    file: str | None = None                       # the model file, relative to the directory
    evidence: str = ""                            # why this format
    prediction_ok: bool | None = None             # the test prediction on zeros (None: not tried)
    warnings: list[str] = field(default_factory=list)
    isolation: dict = field(default_factory=dict)  # what the sandbox applied / skipped
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "valid"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pickle"] = self.pickle.to_dict() if self.pickle is not None else None
        return d


def validate(model_dir: str | os.PathLike, declared_format: str | None = None, allow_pickle: bool = False,
             allowlist: Iterable[str] | None = None, timeout: float = 60, memory_mb: int = 2048) -> Verdict:
    """Check a model directory before registering it. Never raises for a bad
    model: the verdict says what is wrong, in one line."""
    started = time.monotonic()
    checked_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    base = {"checked_at": checked_at, "runtime": runtime_version()}

    def finish(status: str, fmt: str | None, reason: str, **kw) -> Verdict:
        return Verdict(status, fmt, reason, elapsed_s=round(time.monotonic() - started, 3), **base, **kw)

    model_dir = Path(model_dir)
    declared = declared_format.strip().lower() if declared_format else None
    try:
        detected = formats.detect(model_dir, prefer=declared)
        fmt = formats.confirm(declared, detected)
    except formats.FormatError as e:
        return finish("invalid", declared, str(e))
    info = {"file": detected.file, "evidence": detected.evidence}

    # -- pickles --
    pickle_files = list(detected.pickles)
    if fmt == "sklearn":
        loader_file = _loader_file(fmt, model_dir)
        if loader_file and loader_file not in pickle_files:
            pickle_files.append(loader_file)
    pickle_verdict = None
    if pickle_files:
        if not allow_pickle:
            return finish("refused", fmt, f"{PICKLE_REFUSED}: {', '.join(pickle_files)}", **info)
        pickle_verdict = pickles.scan_files([model_dir / p for p in pickle_files],
                                            allowlist=allowlist, labels=pickle_files)
        if not pickle_verdict.safe:
            return finish("refused", fmt, f"unsafe pickle: {pickle_verdict.reason}", pickle=pickle_verdict, **info)
    if fmt == "torchscript" and detected.file:
        ts = pickles.scan_files([model_dir / detected.file], allowlist=allowlist, labels=[detected.file])
        if not ts.safe:
            return finish("refused", fmt, f"unsafe TorchScript archive: {ts.reason}", pickle=ts, **info)

    # -- load in the sandbox --
    result = sandbox.run(fmt, str(model_dir), timeout=timeout, memory_mb=memory_mb)
    report = result.report
    common = dict(pickle=pickle_verdict, isolation=result.isolation,
                  framework_versions=report.get("framework_versions") or {},
                  signature=report.get("signature"), **info)
    if not result.ok:
        reason = result.error or "could not be loaded"
        if result.timed_out:
            reason = f"loading {detected.file} timed out after {timeout:g}s"
        elif not reason.startswith(f"{fmt}:"):
            reason = f"{fmt}: {detected.file}: {reason}"
        return finish("invalid", fmt, reason, **common)
    warnings = list(report.get("warnings") or [])
    prediction_ok = report.get("prediction_ok")
    if report.get("prediction_error"):
        warnings.append(f"test prediction: {report['prediction_error']}")
    loaded = report.get("file") or detected.file
    common["file"] = loaded
    if prediction_ok:
        reason = f"{fmt} model {loaded} loads and predicts on zeros of its input shape"
    else:
        reason = f"{fmt} model {loaded} loads"
    return finish("valid", fmt, reason, prediction_ok=prediction_ok, warnings=warnings, **common)


def _loader_file(fmt: str, model_dir: Path) -> str | None:
    """The file the serving runtime's loader would open (so that it is the
    one scanned), relative to the directory."""
    try:
        from kubelab.server_extension.serving import loaders
    except ImportError:
        return None
    try:
        path = loaders.model_file(fmt, str(model_dir))
    except loaders.LoadError:
        return None
    try:
        return str(Path(path).resolve().relative_to(model_dir.resolve()))
    except ValueError:
        return None
