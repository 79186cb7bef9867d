"""What format a model directory holds, from file names AND content.

``detect(model_dir)`` looks at every file (not following links out of the
directory) and classifies its content by magic numbers and structure; names
only break ties and never decide against the content. ``confirm(declared,
detected)`` checks a format the user declared against what was found.

Content checks:

- onnx: the protobuf parses as ``onnx.ModelProto`` with a graph (files up to
  256 MiB; larger ones, and ``.onnx`` files that fail to parse, by their
  ModelProto header: field 1 ``ir_version``, so the loader reports the real
  error);
- xgboost: a JSON object with a ``"learner"`` key (or UBJSON with one);
- lightgbm: text that starts with ``tree\\n`` and has ``version=v``;
- sklearn: a pickle (``\\x80`` + protocol 2-5; protocol 0/1 only under a
  pickle file name) or a joblib file (zlib/gzip/bz2/lzma/xz/lz4 magic
  followed by compressed pickle data);
- torchscript: a zip with ``constants.pkl`` or ``code/`` entries (a zip with
  only ``data.pkl`` is a ``torch.save`` checkpoint: a pickle, not supported);
- safetensors: an 8-byte little-endian header length, then that many bytes
  of JSON describing tensors.
"""
from __future__ import annotations

import json
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import pickles

#: The formats the serving runtime loads (kubelab.server_extension.serving.loaders.FORMATS).
FORMATS: tuple[str, ...] = ("sklearn", "xgboost", "lightgbm", "onnx", "torchscript", "safetensors")

_HINTS = {
    "sklearn": ".joblib/.pkl",
    "xgboost": ".json/.ubj",
    "lightgbm": ".txt",
    "onnx": ".onnx",
    "torchscript": ".pt",
    "safetensors": ".safetensors",
}

SUPPORTED = ", ".join(f"{f} ({_HINTS[f]})" for f in FORMATS)

_PICKLE_NAMES = (".pkl", ".pickle", ".joblib", ".sav", ".pk", ".p", ".jl")
_ONNX_FULL_PARSE_MAX = 256 * 1024 * 1024
_HEAD = 64 * 1024


class FormatError(ValueError):
    """The content is not a supported model, or contradicts the declared format."""


@dataclass(frozen=True)
class FileKind:
    path: str            # relative to the model directory
    kind: str            # finer content kind (see _DESCRIBE)
    format: str | None   # the model format it is, or None
    evidence: str
    pickle: bool = False  # holds pickle data Python's pickle would load


@dataclass(frozen=True)
class Detected:
    format: str | None                   # one of FORMATS, or None
    file: str | None                     # the model file, relative to the directory
    evidence: str
    kind: str | None = None              # finer content kind of `file`
    pickles: tuple[str, ...] = ()        # every file holding pickle data (scanned before loading)
    files: tuple[FileKind, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict:
        return {"format": self.format, "file": self.file, "evidence": self.evidence,
                "kind": self.kind, "pickles": list(self.pickles)}


_DESCRIBE = {
    "pickle": "a pickle",
    "joblib": "a joblib pickle",
    "onnx": "an ONNX model",
    "xgboost-json": "an xgboost model (JSON)",
    "xgboost-ubj": "an xgboost model (UBJSON)",
    "lightgbm": "a LightGBM text model",
    "torchscript": "a TorchScript archive",
    "torch-pickle": "a torch.save checkpoint (a pickle in a zip), which is not a supported format",
    "safetensors": "a safetensors file",
    "npy": "a numpy .npy array, not a model",
    "hdf5": "an HDF5 file (Keras .h5?), which is not a supported format",
    "gguf": "a GGUF file, which is not a supported format",
    "tf-savedmodel": "a TensorFlow SavedModel, which is not a supported format",
    "json": "a JSON file that is not an xgboost model",
    "zip": "a zip archive that is not a TorchScript model",
    "text": "a text file that is not a LightGBM model",
    "empty": "empty",
    "unknown": "not a recognised model file",
}


def describe(kind: str | None) -> str:
    if kind and kind.startswith("joblib"):
        comp = kind.partition("-")[2]
        return f"a joblib pickle ({comp}-compressed)" if comp else "a joblib pickle"
    return _DESCRIBE.get(kind or "unknown", kind or "unknown")


# -- per-file classification ------------------------------------------------------

def _onnx(path: Path, head: bytes, size: int) -> tuple[bool, str] | None:
    """(fully parsed?, evidence) when the content is (or starts like) an ONNX
    ModelProto; None when it is not."""
    # ModelProto field 1 is ir_version: tag 0x08 and a small varint
    header_ok = len(head) >= 2 and head[0] == 0x08 and 1 <= head[1] <= 30
    if not header_ok and path.suffix.lower() != ".onnx":
        return None
    if size <= _ONNX_FULL_PARSE_MAX:
        try:  # optional in the parent: without it, the header decides
            from onnx import ModelProto
        except ImportError:
            ModelProto = None
        if ModelProto is not None:
            m = ModelProto()
            try:
                m.ParseFromString(path.read_bytes())
                if m.ir_version > 0 and m.HasField("graph"):
                    opsets = ",".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in m.opset_import)
                    return True, (f"parses as onnx.ModelProto (ir_version {m.ir_version}, opset {opsets},"
                                  f" producer {m.producer_name or '?'!r})")
            except Exception as e:  # noqa: BLE001 - protobuf DecodeError and friends
                if header_ok and path.suffix.lower() == ".onnx":
                    return False, f"ModelProto header (ir_version {head[1]}) but does not parse: {_one_line(e)}"
                return None
    if header_ok and path.suffix.lower() == ".onnx":
        return False, f"ModelProto header (ir_version {head[1]})"
    return None


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def _safetensors(head: bytes, size: int) -> int | None:
    if len(head) < 10 or size < 10:
        return None
    (n,) = struct.unpack("<Q", head[:8])
    if not 2 <= n <= size - 8 or n > 100 * 1024 * 1024 or head[8:9] != b"{":
        return None
    return n


def _classify(path: Path, rel: str) -> FileKind:
    size = path.stat().st_size
    if size == 0:
        return FileKind(rel, "empty", None, "empty file")
    with open(path, "rb") as f:
        head = f.read(_HEAD)
    name = path.name.lower()
    suffix = path.suffix.lower()

    # zip: TorchScript or torch.save (or something else)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile:
            names = []
        if any(n.endswith("/constants.pkl") or n == "constants.pkl" or "/code/" in n for n in names):
            return FileKind(rel, "torchscript", "torchscript",
                            f"zip with TorchScript entries ({_first(names, ('constants.pkl', '/code/'))})")
        if any(n.endswith("data.pkl") for n in names):
            return FileKind(rel, "torch-pickle", None, "zip with data.pkl and no TorchScript code", pickle=True)
        return FileKind(rel, "zip", None, f"zip archive ({len(names)} entries)")

    if head.startswith(b"\x93NUMPY"):
        return FileKind(rel, "npy", None, "numpy .npy magic")
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return FileKind(rel, "hdf5", None, "HDF5 magic")
    if head.startswith(b"GGUF"):
        return FileKind(rel, "gguf", None, "GGUF magic")
    if name in ("saved_model.pb", "saved_model.pbtxt"):
        return FileKind(rel, "tf-savedmodel", None, "TensorFlow SavedModel file name")

    n = _safetensors(head, size)
    if n is not None:
        try:
            with open(path, "rb") as f:
                f.seek(8)
                header = json.loads(f.read(n))
            tensors = [k for k, v in header.items() if k != "__metadata__"
                       and isinstance(v, dict) and {"dtype", "shape", "data_offsets"} <= v.keys()]
            if isinstance(header, dict) and (tensors or set(header) <= {"__metadata__"}):
                return FileKind(rel, "safetensors", "safetensors",
                                f"8-byte little-endian header length ({n}) + JSON header with {len(tensors)} tensors")
        except (ValueError, AttributeError, UnicodeDecodeError):
            pass

    if head.startswith(b"tree\n") or head.startswith(b"tree\r\n"):
        first = head[:512]
        if b"version=v" in first:
            return FileKind(rel, "lightgbm", "lightgbm", 'text starting "tree" with "version=v..." (LightGBM model)')
        return FileKind(rel, "text", None, 'starts with "tree" but has no "version=v" line')

    stripped = head.lstrip()
    if stripped.startswith(b"{"):
        if head[:1] == b"{" and b"learner" in head[:256] and not _is_text(head[:256]):
            return FileKind(rel, "xgboost-ubj", "xgboost", 'UBJSON object with a "learner" key')
        if b'"learner"' in head[:4096]:
            return FileKind(rel, "xgboost-json", "xgboost", 'JSON object with a "learner" key (xgboost model)')
        return FileKind(rel, "json", None, "JSON without a \"learner\" key")

    sniffed = pickles.sniff(head)
    if sniffed == "pickle":
        return FileKind(rel, "pickle", "sklearn", f"pickle protocol {head[1]} opcode at the start", pickle=True)
    if sniffed and sniffed.startswith("joblib-"):
        comp = sniffed.partition("-")[2]
        return FileKind(rel, f"joblib-{comp}", "sklearn", f"joblib {comp} header (compressed pickle)", pickle=True)

    onnx = _onnx(path, head, size)
    if onnx is not None:
        return FileKind(rel, "onnx", "onnx", onnx[1])

    if suffix in _PICKLE_NAMES and head[:1] in _PROTO01_FIRST:
        return FileKind(rel, "pickle", "sklearn", "pickle protocol 0/1 opcode at the start of a pickle-named file",
                        pickle=True)
    if _is_text(head[:4096]):
        return FileKind(rel, "text", None, "text")
    return FileKind(rel, "unknown", None, "no known magic number or structure")


# the opcodes a protocol 0/1 pickle can start with
_PROTO01_FIRST = frozenset(bytes([c]) for c in b"(}])cNIJKLMSTUVXFGi")


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the sample is still text
        try:
            data[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return b"\x00" not in data


def _first(names: list[str], needles: tuple[str, ...]) -> str:
    for n in names:
        if any(x in n for x in needles):
            return n
    return names[0] if names else ""


# Hidden files are looked at too: a loader may pick them up.
_SKIP_DIRS = frozenset({".ipynb_checkpoints", "__pycache__"})


def _files(model_dir: Path) -> list[tuple[Path, str]]:
    root = model_dir.resolve()
    out = []
    for dirpath, dirnames, filenames in os.walk(model_dir, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for d in list(dirnames):
            if (Path(dirpath) / d).is_symlink():
                raise FormatError(f"{(Path(dirpath) / d).relative_to(model_dir)} is a symbolic link to a directory;"
                                  " copy the files instead")
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            rel = str(p.relative_to(model_dir))
            if p.is_symlink():
                target = p.resolve()
                if root not in target.parents:
                    raise FormatError(f"{rel} is a symbolic link out of the model directory")
            if p.is_file():
                out.append((p, rel))
    return out


def classify(model_dir: str | os.PathLike) -> list[FileKind]:
    """Every file in the directory and what its content is."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FormatError(f"{model_dir} is not a directory")
    kinds = []
    for p, rel in _files(model_dir):
        try:
            kinds.append(_classify(p, rel))
        except OSError as e:
            raise FormatError(f"{rel} cannot be read: {e.strerror or e}") from None
    return kinds


def detect(model_dir: str | os.PathLike, prefer: str | None = None) -> Detected:
    """The model format and file in ``model_dir``. ``prefer`` (the declared
    format) picks among several candidates. ``format`` is None when nothing
    (or nothing unambiguous) was recognised; ``evidence`` then says why."""
    kinds = classify(model_dir)
    pickled = tuple(k.path for k in kinds if k.pickle)
    if not kinds:
        return Detected(None, None, "the directory has no files", None, pickled, tuple(kinds))
    candidates = [k for k in kinds if k.format]
    if prefer:
        preferred = [k for k in candidates if k.format == prefer]
        if preferred:
            candidates = preferred
    formats = sorted({k.format for k in candidates})
    if not candidates:
        main = _main_file(kinds)
        return Detected(None, main.path, f"{main.path}: {main.evidence}", main.kind, pickled, tuple(kinds))
    if len(formats) > 1:
        listing = ", ".join(f"{k.path} ({k.format})" for k in candidates)
        return Detected(None, None, f"several model files of different formats: {listing}; declare the format",
                        None, pickled, tuple(kinds))
    fmt = formats[0]
    chosen = _pick(candidates)
    evidence = f"{chosen.path}: {chosen.evidence}"
    if fmt != "safetensors" and len(candidates) > 1:
        others = ", ".join(k.path for k in candidates if k is not chosen)
        evidence += f" (also {others})"
    elif fmt == "safetensors" and len(candidates) > 1:
        evidence += f" ({len(candidates)} safetensors files)"
    return Detected(fmt, chosen.path, evidence, chosen.kind, pickled, tuple(kinds))


def _pick(candidates: list[FileKind]) -> FileKind:
    for k in candidates:
        if Path(k.path).stem == "model" and "/" not in k.path:
            return k
    return sorted(candidates, key=lambda k: (k.path.count("/"), k.path))[0]


def _main_file(kinds: list[FileKind]) -> FileKind:
    interesting = [k for k in kinds if k.kind not in ("json", "text", "empty")] or kinds
    return _pick(interesting)


def confirm(declared: str | None, detected: Detected) -> str:
    """The format to load, or FormatError with a one-line reason."""
    if declared is not None:
        declared = declared.strip().lower()
        if declared not in FORMATS:
            raise FormatError(f"unknown format {declared!r}; supported formats: {SUPPORTED}")
    if detected.format is None:
        if detected.file is None and detected.evidence.startswith("several"):
            raise FormatError(detected.evidence)
        what = (f"{detected.file} is {describe(detected.kind)}" if detected.file
                else detected.evidence)
        if declared:
            raise FormatError(f"you said {declared} but {what}")
        raise FormatError(f"no supported model file found ({what}); supported formats: {SUPPORTED}")
    if declared and declared != detected.format:
        raise FormatError(f"you said {declared} but {detected.file} is {describe(detected.kind)}"
                          f" ({detected.format})")
    return detected.format
