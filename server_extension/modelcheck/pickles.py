"""A static scanner for pickle streams: it reads opcodes and never unpickles.

``scan(path)`` walks every pickle stream in one artifact file and collects
every global the stream would import (``GLOBAL``, ``STACK_GLOBAL`` with its
module and name taken from the constant strings that precede it, ``INST``,
and the class or callable of ``OBJ``/``NEWOBJ``/``REDUCE``), then checks them
against an allowlist and a denylist. Supported artifacts:

- a plain pickle (``pickle.dump``, protocols 0-5);
- a joblib file (``joblib.dump``), plain or compressed with zlib, gzip, bz2,
  lzma or xz (decompressed here with the standard library; lz4 only when the
  ``lz4`` package is installed), including the raw numpy array buffers joblib
  writes between pickle opcodes and the nested pickle streams it writes for
  object arrays;
- a zip archive written by PyTorch (``torch.save`` or TorchScript): every
  ``*.pkl`` member (``data.pkl``, ``constants.pkl``).

How it reads: the walk mirrors ``pickle._Unpickler``, the unpickler that
``joblib.load`` uses, opcode for opcode (opcode arguments as described by
``pickletools``): the same framing (``FRAME`` buffers, reads that bypass the
frame), the same memo, mark stack and ``MARK``/``POP`` rules, and joblib's
``NumpyUnpickler.load_build``, which after building a ``NumpyArrayWrapper``
reads the array's bytes straight from the file. Values are tracked
symbolically (constants, tuples, lists and dicts of them, references to
globals, opaque call results) so that ``STACK_GLOBAL`` operands fetched from
the memo are resolved, and so that a wrapper's shape and dtype give the exact
number of bytes joblib will read. Anything that could make the walk disagree
with the real unpickler about where the next opcode starts (a wrapper built
twice or used as a value, a dtype that is not a plain ``numpy.dtype(...)``
construction, a huge frame, ...) makes the stream unsafe: a scanner that
cannot be sure refuses.

Rules:

- every global must be allowed: an allowlist entry ending in ``.`` allows a
  prefix (``sklearn.``), any other entry one exact name;
- the denylist wins over the allowlist: an entry matches the name itself and
  anything below it (``os`` matches ``os.system``); names whose attribute path
  (protocol 4 dotted names) walks through a private or dunder attribute, or
  through a segment such as ``os``, ``system``, ``load`` or ``eval``, are
  denied too;
- a ``STACK_GLOBAL`` whose module or name is not a constant string (it is
  computed by a call, or is too long), an extension-registry code (``EXT*``),
  a call whose callable is not a global (``REDUCE`` on a call result), a
  persistent id outside a PyTorch archive, out-of-band buffers, and anything
  the walk cannot read (truncated, unknown opcode, lz4 without ``lz4``,
  joblib < 0.10 companion files) are unsafe.
"""
from __future__ import annotations

import _compat_pickle
import bz2
import codecs
import io
import lzma
import pickletools
import re
import struct
import sys
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from pickle import HIGHEST_PROTOCOL  # a constant; nothing here unpickles
from typing import Iterable

__all__ = [
    "DEFAULT_ALLOWLIST", "DEFAULT_DENYLIST", "TORCH_ALLOWLIST", "PickleVerdict",
    "ScanError", "is_allowed", "denied", "scan", "scan_bytes", "scan_files", "sniff",
]

# -- policy --------------------------------------------------------------------

#: Globals a pickled scikit-learn / xgboost / lightgbm model may import.
DEFAULT_ALLOWLIST: tuple[str, ...] = (
    "sklearn.",
    "numpy.",
    "scipy.",
    # joblib: only the array placeholder joblib.dump writes; the rest of joblib
    # (load, Memory, Parallel, loky, cloudpickle, the < 0.10 compat readers) is
    # a gadget, not model state.
    "joblib.numpy_pickle.NumpyArrayWrapper",
    # the scikit-learn wrappers of xgboost and lightgbm and their boosters
    "xgboost.sklearn.",
    "xgboost.core.Booster",
    "lightgbm.sklearn.",
    "lightgbm.basic.Booster",
    "collections.OrderedDict",
    "collections.defaultdict",
    "collections.Counter",
    "collections.deque",
    # plain data types (no callables that reach code or files)
    "builtins.slice", "builtins.set", "builtins.frozenset", "builtins.complex",
    "builtins.range", "builtins.bytearray", "builtins.bytes", "builtins.dict",
    "builtins.list", "builtins.tuple", "builtins.int", "builtins.float",
    "builtins.bool", "builtins.str", "builtins.object",
    # how the pickle protocol itself rebuilds objects (protocols 0-2)
    "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__",
    # bytes in protocol <= 2 pickles (numpy arrays)
    "_codecs.encode",
)

#: Extra names allowed in the pickles inside PyTorch archives (TorchScript's
#: ``data.pkl``/``constants.pkl`` are read by TorchScript's own C++ unpickler,
#: which only knows tensor and storage types, but ``torch.save`` archives are
#: read by Python's pickle).
TORCH_ALLOWLIST: tuple[str, ...] = (
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_device_tensor_from_numpy",
    "torch._utils._rebuild_meta_tensor_no_storage",
    "torch._tensor._rebuild_from_type_v2",
    "torch.storage._load_from_bytes",
    "torch.jit._pickle.",
    "torch.Size", "torch.device", "torch.dtype", "torch.Tensor",
    "torch.nn.parameter.Parameter",
    "torch.storage.UntypedStorage", "torch.storage.TypedStorage",
    "torch.FloatStorage", "torch.DoubleStorage", "torch.HalfStorage",
    "torch.BFloat16Storage", "torch.LongStorage", "torch.IntStorage",
    "torch.ShortStorage", "torch.CharStorage", "torch.ByteStorage",
    "torch.BoolStorage", "torch.ComplexFloatStorage", "torch.ComplexDoubleStorage",
    "torch.float16", "torch.float32", "torch.float64", "torch.bfloat16",
    "torch.int8", "torch.int16", "torch.int32", "torch.int64", "torch.uint8",
    "torch.bool", "torch.complex64", "torch.complex128",
    "__torch__.",
    "collections.OrderedDict",
)

#: Always refused, even when an allowlist entry covers them.
DEFAULT_DENYLIST: tuple[str, ...] = (
    # processes, shells, the interpreter, code objects
    "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "_posixsubprocess",
    "sys", "pty", "runpy", "importlib", "imp", "zipimport", "pkgutil", "site",
    "sysconfig", "platform", "ctypes", "_ctypes", "cffi", "marshal", "types",
    "code", "codeop", "inspect", "pdb", "bdb", "trace", "timeit", "cProfile",
    "profile", "multiprocessing", "concurrent", "threading", "_thread", "signal",
    "resource", "gc", "asyncio", "ensurepip", "pip", "setuptools", "distutils",
    "venv", "operator", "_operator", "functools", "weakref", "atexit", "builtins.eval",
    "builtins.exec", "builtins.compile", "builtins.open", "builtins.__import__",
    "builtins.getattr", "builtins.setattr", "builtins.delattr", "builtins.globals",
    "builtins.locals", "builtins.vars", "builtins.input", "builtins.breakpoint",
    "builtins.help", "builtins.exit", "builtins.quit", "builtins.type",
    "builtins.super", "builtins.memoryview", "builtins.__build_class__",
    "builtins.print", "builtins.classmethod", "builtins.staticmethod",
    "builtins.property", "builtins.iter", "builtins.next", "builtins.map",
    "builtins.filter", "builtins.apply", "builtins.execfile",
    # files and the network
    "io", "_io", "pathlib", "tempfile", "glob", "fileinput", "shutil", "zipfile",
    "tarfile", "gzip", "bz2", "lzma", "shelve", "dbm", "sqlite3", "socket",
    "_socket", "ssl", "select", "selectors", "http", "urllib", "urllib3",
    "requests", "ftplib", "smtplib", "telnetlib", "xmlrpc", "webbrowser",
    "boto3", "botocore",
    # other deserialisers (a pickle that unpickles more pickles)
    "pickle", "_pickle", "pickletools", "copyreg._extension_registry",
    "dill", "cloudpickle", "torch.load", "torch.save", "torch.hub",
    "torch.package", "torch.utils.cpp_extension", "torch.jit.load",
    # joblib: readers, writers, parallelism, the < 0.10 format's companion files
    "joblib.load", "joblib.dump", "joblib.numpy_pickle.load",
    "joblib.numpy_pickle.dump", "joblib.numpy_pickle.NDArrayWrapper",
    "joblib.numpy_pickle.ZNDArrayWrapper", "joblib.numpy_pickle_compat",
    "joblib.externals", "joblib.parallel", "joblib.Parallel", "joblib.memory",
    "joblib.Memory", "joblib._store_backends", "joblib.pool", "joblib.executor",
    "joblib._parallel_backends", "joblib._memmapping_reducer", "joblib.disk",
    "joblib.logger", "joblib.testing",
    # numpy: file I/O, pickles, compilers, test runners
    "numpy.load", "numpy.save", "numpy.savez", "numpy.savez_compressed",
    "numpy.savetxt", "numpy.loadtxt", "numpy.genfromtxt", "numpy.fromfile",
    "numpy.fromregex", "numpy.memmap", "numpy.DataSource", "numpy.lib.npyio",
    "numpy.lib._npyio_impl", "numpy.lib.format", "numpy.lib._datasource",
    "numpy.lib._utils_impl", "numpy.lib.utils", "numpy.ctypeslib", "numpy.f2py",
    "numpy.distutils", "numpy.testing", "numpy._pytesttester", "numpy.ma.load",
    "numpy.ma.loads", "numpy.ma.dump", "numpy.ma.dumps", "numpy.ma.core.load",
    "numpy.ma.core.loads", "numpy.ma.core.dump", "numpy.ma.core.dumps",
    "numpy.core.memmap", "numpy._core.memmap",
    # scikit-learn: downloads, file readers/writers, test helpers, joblib
    "sklearn.datasets", "sklearn.utils._testing", "sklearn.utils.estimator_checks",
    "sklearn.externals", "sklearn._build_utils", "sklearn.utils._show_versions",
    "sklearn.utils.parallel", "sklearn.utils._joblib", "sklearn.utils.fixes",
    "sklearn.utils.validation.check_memory", "sklearn.conftest",
    # scipy: file I/O, downloads, raw function pointers, test helpers
    "scipy.io", "scipy.datasets", "scipy.misc", "scipy.LowLevelCallable",
    "scipy._lib._ccallback", "scipy._lib._testutils", "scipy.weave", "scipy.conftest",
)

# Attribute-path segments that are never part of model state.
_DENY_SEGMENTS = frozenset({
    "os", "sys", "subprocess", "builtins", "posix", "nt", "system", "popen", "spawn",
    "exec", "eval", "compile", "open", "load", "loads", "dump", "dumps", "save",
    "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt", "fromfile",
    "tofile", "memmap", "import_module", "getattr", "setattr", "delattr",
})

_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
_WRAPPER_NAMES = frozenset({"NumpyArrayWrapper", "NDArrayWrapper", "ZNDArrayWrapper"})
_DTYPE = "numpy.dtype"
_ARRAY_SUBCLASSES = frozenset({"numpy.ndarray", "numpy.matrix", "numpy.matrixlib.defmatrix.matrix"})

# -- limits (the parent process must not be the one that runs out of memory) ---

MAX_OPCODES = 20_000_000
MAX_FRAME = 64 * 1024 * 1024
MAX_LINE = 64 * 1024 * 1024
MAX_TRACKED_STR = 4096           # longer strings are kept as their length only
MAX_TRACKED_ITEMS = 100_000      # per list/dict; beyond, the container is opaque
_CHUNK = 1 << 20


class ScanError(Exception):
    """The stream cannot be read well enough to be sure; it is refused."""


@dataclass
class PickleVerdict:
    safe: bool
    globals: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    reason: str = ""
    files: list[str] = field(default_factory=list)
    streams: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


# -- policy checks -------------------------------------------------------------

def _prefix_match(key: str, entry: str) -> bool:
    if entry.endswith("."):
        return key.startswith(entry)
    return key == entry or key.startswith(entry + ".")


def denied(key: str, denylist: Iterable[str] = DEFAULT_DENYLIST) -> str | None:
    """Why ``key`` ("module.name") is denied, or None."""
    for entry in denylist:
        if _prefix_match(key, entry):
            return f"denylisted ({entry.rstrip('.')})"
    return None


def _path_denied(module: str, name: str) -> str | None:
    segments = name.split(".")
    if len(segments) > 1 and any(s.startswith("_") for s in segments):
        return "walks through a private attribute"
    for s in module.split(".")[1:] + segments:
        if s in _DENY_SEGMENTS:
            return f"walks through {s!r}"
    if segments[-1] in _WRAPPER_NAMES and f"{module}.{name}" != _WRAPPER:
        return "joblib array wrapper under another name"
    if not module or not all(s.isidentifier() for s in module.split(".")) or \
            not all(s.isidentifier() for s in segments):
        return "not a valid module/attribute name"
    return None


def is_allowed(key: str, allowlist: Iterable[str]) -> bool:
    for entry in allowlist:
        if entry.endswith("."):
            if key.startswith(entry):
                return True
        elif key == entry:
            return True
    return False


# -- byte sources --------------------------------------------------------------

class _ZlibRaw(io.RawIOBase):
    """What joblib's BinaryZlibFile/BinaryGzipFile return: one zlib (or gzip,
    wbits=31) stream; data after its end is never returned, and a stream cut
    short just ends (joblib treats that as end of file too). Decompresses at
    most 1 MiB at a time (no decompression bombs in memory)."""

    def __init__(self, fp, wbits: int):
        self._fp = fp
        self._d = zlib.decompressobj(wbits)
        self._buf = b""
        self._pending = b""

    def readable(self):
        return True

    def readinto(self, b):
        while not self._buf:
            if self._d.eof:
                return 0
            data = self._pending or self._fp.read(_CHUNK)
            if not data:
                return 0
            try:
                self._buf = self._d.decompress(data, _CHUNK)
            except zlib.error as e:
                raise ScanError(f"corrupt compressed data ({e})") from None
            self._pending = self._d.unconsumed_tail
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class _Raw:
    """The file as the unpickler sees it (after decompression), with caps."""

    def __init__(self, f):
        self._f = f
        self.pos = 0

    def read(self, n: int) -> bytes:
        if n > MAX_FRAME:
            raise ScanError(f"a {n}-byte read is larger than this scanner buffers")
        data = self._f.read(n)
        self.pos += len(data)
        return data

    def readline(self) -> bytes:
        data = self._f.readline(MAX_LINE + 1)
        if len(data) > MAX_LINE:
            raise ScanError("a text opcode argument longer than 64 MiB")
        self.pos += len(data)
        return data

    def skip(self, n: int) -> int:
        """Consume up to n bytes; return how many there were."""
        done = 0
        while done < n:
            chunk = self._f.read(min(_CHUNK, n - done))
            if not chunk:
                break
            done += len(chunk)
        self.pos += done
        return done


class _Unframer:
    """pickle._Unframer, with large reads skipped instead of buffered."""

    def __init__(self, raw: _Raw):
        self.raw = raw
        self.frame: io.BytesIO | None = None

    def read(self, n: int) -> bytes:
        if self.frame is not None:
            data = self.frame.read(n)
            if not data and n != 0:
                self.frame = None
                return self.raw.read(n)
            if len(data) < n:
                raise ScanError("pickle exhausted before end of frame")
            return data
        return self.raw.read(n)

    def skip(self, n: int) -> None:
        """Read an n-byte argument whose content does not matter."""
        if self.frame is not None:
            data = self.frame.read(n)
            if not data and n != 0:
                self.frame = None
            else:
                if len(data) < n:
                    raise ScanError("pickle exhausted before end of frame")
                return
        if self.raw.skip(n) < n:
            raise ScanError("truncated pickle (a data argument runs past the end)")

    def readline(self) -> bytes:
        if self.frame is not None:
            data = self.frame.readline()
            if not data:
                self.frame = None
                return self.raw.readline()
            if data[-1:] != b"\n":
                raise ScanError("pickle exhausted before end of frame")
            return data
        return self.raw.readline()

    def load_frame(self, size: int) -> None:
        if self.frame is not None and self.frame.read() != b"":
            raise ScanError("beginning of a new frame before end of current frame")
        if size > MAX_FRAME:
            raise ScanError(f"a {size}-byte pickle frame (pickle writes 64 KiB frames)")
        self.frame = io.BytesIO(self.raw.read(size))


# -- symbolic values -----------------------------------------------------------

class _Global:
    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key  # "module.name", or None when unresolved


class _Obj:
    """The result of a call (REDUCE, NEWOBJ, ...): opaque, but remembers how it
    was made so that numpy dtypes can be rebuilt exactly."""

    __slots__ = ("func", "args", "state", "builds")

    def __init__(self, func=None, args=None):
        self.func, self.args, self.state, self.builds = func, args, None, 0


class _Wrapper(_Obj):
    __slots__ = ()


class _List:
    __slots__ = ("items", "complete")

    def __init__(self, items=None):
        self.items = list(items or ())
        self.complete = len(self.items) <= MAX_TRACKED_ITEMS
        if not self.complete:
            self.items = []


class _Dict:
    __slots__ = ("items", "complete")

    def __init__(self):
        self.items, self.complete = {}, True

    def set(self, k, v):
        if not self.complete:
            return
        try:
            hash(k)
        except TypeError:
            self.complete = False
            return
        if isinstance(k, (_Obj, _Global, _List, _Dict, _Blob, _Opaque)):
            self.complete = False
            return
        self.items[k] = v
        if len(self.items) > MAX_TRACKED_ITEMS:
            self.items, self.complete = {}, False


class _Blob:
    """bytes / bytearray / long strings: length only."""
    __slots__ = ("n",)

    def __init__(self, n):
        self.n = n


class _Opaque:
    __slots__ = ()


_OPAQUE = _Opaque()
_MAX_SMALL_BYTES = 64


class _Stop(Exception):
    def __init__(self, value):
        self.value = value


class _Findings:
    def __init__(self, allowlist, denylist, torch: bool):
        self.allowlist = tuple(allowlist)
        self.denylist = tuple(denylist)
        self.torch = torch
        self.globals: set[str] = set()
        self.refused: dict[str, str] = {}   # entry -> why
        self.origin: dict[str, str] = {}    # entry -> the file (and member) it is in
        self.streams = 0

    def add_global(self, module: str, name: str, label: str) -> str:
        key = f"{module}.{name}"
        self.globals.add(key)
        why = denied(key, self.denylist) or _path_denied(module, name)
        if why is None and key != _WRAPPER and not is_allowed(key, self.allowlist):
            # (joblib's array placeholder is part of the file format, which
            # this scanner models itself: allowed whatever the allowlist)
            why = "not on the allowlist"
        if why is not None and key not in self.refused:
            self.refused[key] = why
            self.origin[key] = label
        return key

    def unsafe(self, entry: str, why: str) -> None:
        self.refused.setdefault(entry, why)


# -- the walk ------------------------------------------------------------------

_U1 = struct.Struct("<B").unpack
_U2 = struct.Struct("<H").unpack
_I4 = struct.Struct("<i").unpack
_U4 = struct.Struct("<I").unpack
_U8 = struct.Struct("<Q").unpack
_F8 = struct.Struct(">d").unpack

_DESCR = re.compile(r"[<>|=]?[A-Za-z]{1,2}[0-9]{0,10}(\[[A-Za-z0-9]+\])?")


class _Walker:
    """One pickle stream, read the way pickle._Unpickler reads it."""

    def __init__(self, raw: _Raw, findings: _Findings, *, joblib: bool, label: str):
        self.raw = raw
        self.u = _Unframer(raw)
        self.f = findings
        self.joblib = joblib
        self.label = label
        self.stack: list = []
        self.metastack: list[list] = []
        self.memo: dict[int, object] = {}
        self.proto = 0
        self.ops = 0

    # helpers
    def _err(self, msg: str):
        raise ScanError(f"{msg} (at byte {self.raw.pos})")

    def pop(self):
        if not self.stack:
            self._err("malformed pickle: pop from an empty stack")
        return self.stack.pop()

    def top(self):
        if not self.stack:
            self._err("malformed pickle: empty stack")
        return self.stack[-1]

    def pop_mark(self) -> list:
        if not self.metastack:
            self._err("malformed pickle: no MARK")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def use(self, *values) -> None:
        """A value consumed by anything but a plain stack/memo move. joblib's
        array placeholder may only be created by NEWOBJ and then built once:
        any other use could make joblib read array bytes where this walk does
        not (or the reverse)."""
        if not self.joblib:
            return
        for v in values:
            if isinstance(v, _Wrapper) or (isinstance(v, _Global) and v.key == _WRAPPER):
                self._err("joblib's NumpyArrayWrapper used other than the way joblib.dump writes it"
                          " with pickle protocol >= 2")

    def callable_(self, v, op: str) -> None:
        if not isinstance(v, _Global):
            self.f.unsafe(f"<{op} of a computed callable>",
                          f"{self.label}: {op} calls something that is not an imported global")

    def _str(self, data: bytes, encoding: str, errors: str = "strict"):
        try:
            s = str(data, encoding, errors)
        except UnicodeDecodeError:
            self._err("undecodable string")
        return s if len(s) <= MAX_TRACKED_STR else _Blob(len(s))

    def _lenarg(self, n: int, kind: str):
        """A length-prefixed argument: kept when small, skipped when not."""
        if kind == "str" and n <= MAX_TRACKED_STR * 4:
            return self._str(self.u.read(n), "utf-8", "surrogatepass")
        if kind == "bytes" and n <= _MAX_SMALL_BYTES:
            return self.u.read(n)
        self.u.skip(n)
        return _Blob(n)

    def _global(self, module: str, name: str):
        if self.proto < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        return _Global(self.f.add_global(module, name, self.label))

    def _line(self) -> bytes:
        line = self.u.readline()
        if not line.endswith(b"\n"):
            self._err("truncated pickle (a text argument has no newline)")
        return line[:-1]

    def _int_line(self) -> int:
        try:
            return int(self._line())
        except ValueError:
            self._err("malformed integer")

    # the main loop
    def run(self):
        self.f.streams += 1
        try:
            while True:
                key = self.u.read(1)
                if not key:
                    self._err("truncated pickle (no STOP)")
                self.ops += 1
                if self.ops > MAX_OPCODES:
                    self._err(f"more than {MAX_OPCODES} opcodes")
                handler = _DISPATCH.get(key[0])
                if handler is None:
                    self._err(f"unknown opcode {key!r}")
                handler(self)
        except _Stop as stop:
            return stop.value

    # -- opcodes --
    def op_proto(self):
        proto = self.u.read(1)
        if not proto or proto[0] > HIGHEST_PROTOCOL:
            self._err("unsupported pickle protocol")
        self.proto = proto[0]

    def op_frame(self):
        (size,) = _U8(self._exact(8))
        if size > sys.maxsize:
            self._err("frame too large")
        self.u.load_frame(size)

    def _exact(self, n: int) -> bytes:
        data = self.u.read(n)
        if len(data) < n:
            self._err("truncated pickle")
        return data

    def op_stop(self):
        value = self.pop()
        self.use(value)
        raise _Stop(value)

    def op_mark(self):
        self.metastack.append(self.stack)
        self.stack = []

    def op_pop(self):
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def op_pop_mark(self):
        self.pop_mark()

    def op_dup(self):
        self.stack.append(self.top())

    # constants
    def op_none(self):
        self.stack.append(None)

    def op_true(self):
        self.stack.append(True)

    def op_false(self):
        self.stack.append(False)

    def op_int(self):
        data = self._line()
        if data == b"00":
            v = False
        elif data == b"01":
            v = True
        else:
            try:
                v = int(data, 0)
            except ValueError:
                self._err("malformed INT")
        self.stack.append(v)

    def op_binint(self):
        self.stack.append(_I4(self._exact(4))[0])

    def op_binint1(self):
        self.stack.append(self._exact(1)[0])

    def op_binint2(self):
        self.stack.append(_U2(self._exact(2))[0])

    def op_long(self):
        val = self._line()
        if val[-1:] == b"L":
            val = val[:-1]
        try:
            self.stack.append(int(val, 0) if len(val) < 4300 else _OPAQUE)
        except ValueError:
            self._err("malformed LONG")

    def op_long1(self):
        n = self._exact(1)[0]
        self.stack.append(int.from_bytes(self._exact(n), "little", signed=True))

    def op_long4(self):
        (n,) = _I4(self._exact(4))
        if n < 0:
            self._err("LONG4 byte count < 0")
        if n <= 64:
            self.stack.append(int.from_bytes(self._exact(n), "little", signed=True))
        else:
            self.u.skip(n)
            self.stack.append(_OPAQUE)

    def op_float(self):
        try:
            self.stack.append(float(self._line()))
        except ValueError:
            self._err("malformed FLOAT")

    def op_binfloat(self):
        self.stack.append(_F8(self._exact(8))[0])

    def op_string(self):
        data = self._line()
        if len(data) >= 2 and data[0] == data[-1] and data[0] in b"\"'":
            data = data[1:-1]
        else:
            self._err("the STRING opcode argument must be quoted")
        try:
            raw = codecs.escape_decode(data)[0]
        except Exception:  # noqa: BLE001 - the real unpickler fails here too
            self._err("malformed STRING")
        self.stack.append(self._str(raw, "ascii"))

    def op_binstring(self):
        (n,) = _I4(self._exact(4))
        if n < 0:
            self._err("BINSTRING pickle has negative byte count")
        self.stack.append(self._py2str(n))

    def op_short_binstring(self):
        self.stack.append(self._py2str(self._exact(1)[0]))

    def _py2str(self, n: int):
        if n > MAX_TRACKED_STR:
            self.u.skip(n)
            return _Blob(n)
        return self._str(self._exact(n), "ascii")

    def op_unicode(self):
        self.stack.append(self._str(self._line(), "raw-unicode-escape"))

    def op_binunicode(self):
        self.stack.append(self._lenarg(_U4(self._exact(4))[0], "str"))

    def op_binunicode8(self):
        self.stack.append(self._lenarg(_U8(self._exact(8))[0], "str"))

    def op_short_binunicode(self):
        self.stack.append(self._lenarg(self._exact(1)[0], "str"))

    def op_binbytes(self):
        self.stack.append(self._lenarg(_U4(self._exact(4))[0], "bytes"))

    def op_short_binbytes(self):
        self.stack.append(self._lenarg(self._exact(1)[0], "bytes"))

    def op_binbytes8(self):
        self.stack.append(self._lenarg(_U8(self._exact(8))[0], "bytes"))

    def op_bytearray8(self):
        n = _U8(self._exact(8))[0]
        self.u.skip(n)
        self.stack.append(_Blob(n))

    def op_next_buffer(self):
        self.f.unsafe("<out-of-band buffer>", f"{self.label}: refers to out-of-band buffers (NEXT_BUFFER)")
        self.stack.append(_Blob(0))

    def op_readonly_buffer(self):
        v = self.top()
        self.use(v)

    # containers
    def op_empty_tuple(self):
        self.stack.append(())

    def op_tuple(self):
        items = self.pop_mark()
        self.use(*items)
        self.stack.append(tuple(items))

    def op_tuple1(self):
        v = self.pop()
        self.use(v)
        self.stack.append((v,))

    def op_tuple2(self):
        b, a = self.pop(), self.pop()
        self.use(a, b)
        self.stack.append((a, b))

    def op_tuple3(self):
        c, b, a = self.pop(), self.pop(), self.pop()
        self.use(a, b, c)
        self.stack.append((a, b, c))

    def op_empty_list(self):
        self.stack.append(_List())

    def op_list(self):
        items = self.pop_mark()
        self.use(*items)
        self.stack.append(_List(items))

    def op_empty_dict(self):
        self.stack.append(_Dict())

    def op_dict(self):
        items = self.pop_mark()
        self.use(*items)
        if len(items) % 2:
            self._err("DICT with an odd number of items")
        d = _Dict()
        for i in range(0, len(items), 2):
            d.set(items[i], items[i + 1])
        self.stack.append(d)

    def op_empty_set(self):
        self.stack.append(_OPAQUE)

    def op_frozenset(self):
        items = self.pop_mark()
        self.use(*items)
        self.stack.append(_OPAQUE)

    def op_append(self):
        value = self.pop()
        target = self.top()
        self.use(value, target)
        if isinstance(target, _List) and target.complete:
            target.items.append(value)
            if len(target.items) > MAX_TRACKED_ITEMS:
                target.items, target.complete = [], False

    def op_appends(self):
        items = self.pop_mark()
        target = self.top()
        self.use(target, *items)
        if isinstance(target, _List) and target.complete:
            target.items.extend(items)
            if len(target.items) > MAX_TRACKED_ITEMS:
                target.items, target.complete = [], False

    def op_setitem(self):
        value, key = self.pop(), self.pop()
        target = self.top()
        self.use(key, value, target)
        if isinstance(target, _Dict):
            target.set(key, value)

    def op_setitems(self):
        items = self.pop_mark()
        target = self.top()
        self.use(target, *items)
        if len(items) % 2:
            self._err("SETITEMS with an odd number of items")
        if isinstance(target, _Dict):
            for i in range(0, len(items), 2):
                target.set(items[i], items[i + 1])

    def op_additems(self):
        items = self.pop_mark()
        self.use(self.top(), *items)

    # memo
    def op_get(self):
        self._get(self._int_line())

    def op_binget(self):
        self._get(self._exact(1)[0])

    def op_long_binget(self):
        self._get(_U4(self._exact(4))[0])

    def _get(self, i: int):
        if i not in self.memo:
            self._err(f"memo value not found at index {i}")
        self.stack.append(self.memo[i])

    def op_put(self):
        i = self._int_line()
        if i < 0:
            self._err("negative PUT argument")
        self.memo[i] = self.top()

    def op_binput(self):
        self.memo[self._exact(1)[0]] = self.top()

    def op_long_binput(self):
        self.memo[_U4(self._exact(4))[0]] = self.top()

    def op_memoize(self):
        self.memo[len(self.memo)] = self.top()

    # imports and calls
    def op_global(self):
        module = self._line()
        name = self._line()
        try:
            g = self._global(module.decode("utf-8"), name.decode("utf-8"))
        except UnicodeDecodeError:
            self._err("undecodable GLOBAL")
        self.stack.append(g)

    def op_stack_global(self):
        name, module = self.pop(), self.pop()
        if type(module) is str and type(name) is str:
            self.stack.append(self._global(module, name))
            return
        self.use(module, name)
        self.f.unsafe("<unresolved STACK_GLOBAL>",
                      f"{self.label}: STACK_GLOBAL takes its module/name from a computed value, not a constant string")
        self.stack.append(_Global(None))

    def _ext(self, code: int):
        self.f.unsafe(f"<extension code {code}>",
                      f"{self.label}: imports through the copyreg extension registry (EXT opcodes)")
        self.stack.append(_Global(None))

    def op_ext1(self):
        self._ext(self._exact(1)[0])

    def op_ext2(self):
        self._ext(_U2(self._exact(2))[0])

    def op_ext4(self):
        self._ext(_I4(self._exact(4))[0])

    def op_reduce(self):
        args = self.pop()
        func = self.top()
        self.use(func, args)
        self.callable_(func, "REDUCE")
        self.stack[-1] = _Obj(func, args)

    def op_newobj(self):
        args = self.pop()
        cls = self.pop()
        if isinstance(cls, _Global) and cls.key == _WRAPPER and self.joblib:
            if args != ():
                self._err("NumpyArrayWrapper created with arguments")
            self.stack.append(_Wrapper(cls, args))
            return
        self.use(cls, args)
        self.callable_(cls, "NEWOBJ")
        self.stack.append(_Obj(cls, args))

    def op_newobj_ex(self):
        kwargs, args, cls = self.pop(), self.pop(), self.pop()
        self.use(cls, args, kwargs)
        self.callable_(cls, "NEWOBJ_EX")
        self.stack.append(_Obj(cls, args))

    def op_inst(self):
        module = self._line()
        name = self._line()
        try:
            cls = self._global(module.decode("ascii"), name.decode("ascii"))
        except UnicodeDecodeError:
            self._err("undecodable INST")
        args = self.pop_mark()
        self.use(cls, *args)
        self.stack.append(_Obj(cls, tuple(args)))

    def op_obj(self):
        args = self.pop_mark()
        if not args:
            self._err("OBJ without a class")
        cls = args.pop(0)
        self.use(cls, *args)
        self.callable_(cls, "OBJ")
        self.stack.append(_Obj(cls, tuple(args)))

    def op_persid(self):
        self._line()
        self._persistent()

    def op_binpersid(self):
        self.use(self.pop())
        self._persistent()

    def _persistent(self):
        if not self.f.torch:
            self.f.unsafe("<persistent id>",
                          f"{self.label}: uses persistent ids (PERSID), which model pickles never need")
        self.stack.append(_OPAQUE)

    def op_build(self):
        state = self.pop()
        inst = self.top()
        self.use(state)
        if isinstance(inst, _Wrapper) and self.joblib:
            self._build_wrapper(inst, state)
            return
        self.use(inst)
        if isinstance(inst, _Obj):
            inst.state = state
            inst.builds += 1

    # joblib's NumpyUnpickler.load_build
    def _build_wrapper(self, w: _Wrapper, state) -> None:
        if w.builds:
            self._err("NumpyArrayWrapper built twice")
        w.builds = 1
        if not isinstance(state, _Dict) or not state.complete or \
                not all(type(k) is str for k in state.items):
            self._err("NumpyArrayWrapper with a state joblib.dump never writes")
        attrs = state.items
        shape, dtype_v, subclass = attrs.get("shape"), attrs.get("dtype"), attrs.get("subclass")
        if not isinstance(subclass, _Global) or subclass.key not in _ARRAY_SUBCLASSES:
            self._err("NumpyArrayWrapper for an unexpected array class")
        if not isinstance(shape, tuple) or not all(type(x) is int for x in shape):
            self._err("NumpyArrayWrapper with a non-integer shape")
        dtype = _materialize_dtype(dtype_v)
        if dtype is None:
            self._err("NumpyArrayWrapper whose dtype is not a plain numpy.dtype")
        count = 1
        for x in shape:
            if x < 0:
                self._err("NumpyArrayWrapper with a negative dimension")
            count *= x
        if count >= 2 ** 63:
            self._err("NumpyArrayWrapper shape overflows")
        if dtype.hasobject:
            # joblib: a fresh pickle._Unpickler on the same file (no wrapper
            # semantics), sharing find_class
            inner = _Walker(self.raw, self.f, joblib=False, label=self.label)
            inner.run()
        else:
            if attrs.get("numpy_array_alignment_bytes", None) is not None:
                pad = self.raw.read(1)
                if pad and pad[0]:
                    self.raw.skip(pad[0])
            itemsize = dtype.itemsize
            if itemsize == 0:
                self._err("NumpyArrayWrapper with a zero-size dtype")
            nbytes = count * itemsize
            if self.raw.skip(nbytes) < nbytes:
                self._err("truncated joblib file (array data runs past the end)")
        self.stack[-1] = _OPAQUE


def _materialize_dtype(v, depth: int = 0):
    """The numpy dtype a symbolic ``numpy.dtype(descr, align, copy)`` +
    ``__setstate__(state)`` builds, or None. Only constants reach numpy."""
    if depth > 8 or not isinstance(v, _Obj) or isinstance(v, _Wrapper):
        return None
    if not isinstance(v.func, _Global) or v.func.key != _DTYPE or v.builds > 1:
        return None
    args = v.args
    if not (isinstance(args, tuple) and len(args) == 3 and type(args[0]) is str
            and _DESCR.fullmatch(args[0]) and all(type(a) in (bool, int) for a in args[1:])):
        return None
    try:
        import numpy as np

        d = np.dtype(args[0], bool(args[1]), bool(args[2]))
        if v.state is not None:
            state = _constant(v.state, depth)
            if state is None or not isinstance(state, tuple):
                return None
            d.__setstate__(state)
        return d
    except Exception:  # noqa: BLE001 - anything odd: refuse
        return None


def _constant(v, depth: int):
    """A real Python value for a symbolic constant (dtypes included), or None."""
    if v is None or type(v) in (bool, int, float, str, bytes):
        return v
    if isinstance(v, tuple):
        out = []
        for x in v:
            c = _constant(x, depth + 1)
            if c is None and x is not None:
                return None
            out.append(c)
        return tuple(out)
    if isinstance(v, _Dict) and v.complete:
        out = {}
        for k, x in v.items.items():
            c = _constant(x, depth + 1)
            if c is None and x is not None:
                return None
            out[k] = c
        return out
    if isinstance(v, _Obj):
        return _materialize_dtype(v, depth + 1)
    return None


_DISPATCH: dict[int, object] = {}


def _register():
    names = {op.name: op.code for op in pickletools.opcodes}
    table = {
        "PROTO": _Walker.op_proto, "FRAME": _Walker.op_frame, "STOP": _Walker.op_stop,
        "MARK": _Walker.op_mark, "POP": _Walker.op_pop, "POP_MARK": _Walker.op_pop_mark,
        "DUP": _Walker.op_dup, "NONE": _Walker.op_none, "NEWTRUE": _Walker.op_true,
        "NEWFALSE": _Walker.op_false, "INT": _Walker.op_int, "BININT": _Walker.op_binint,
        "BININT1": _Walker.op_binint1, "BININT2": _Walker.op_binint2, "LONG": _Walker.op_long,
        "LONG1": _Walker.op_long1, "LONG4": _Walker.op_long4, "FLOAT": _Walker.op_float,
        "BINFLOAT": _Walker.op_binfloat, "STRING": _Walker.op_string,
        "BINSTRING": _Walker.op_binstring, "SHORT_BINSTRING": _Walker.op_short_binstring,
        "UNICODE": _Walker.op_unicode, "BINUNICODE": _Walker.op_binunicode,
        "BINUNICODE8": _Walker.op_binunicode8, "SHORT_BINUNICODE": _Walker.op_short_binunicode,
        "BINBYTES": _Walker.op_binbytes, "SHORT_BINBYTES": _Walker.op_short_binbytes,
        "BINBYTES8": _Walker.op_binbytes8, "BYTEARRAY8": _Walker.op_bytearray8,
        "NEXT_BUFFER": _Walker.op_next_buffer, "READONLY_BUFFER": _Walker.op_readonly_buffer,
        "EMPTY_TUPLE": _Walker.op_empty_tuple, "TUPLE": _Walker.op_tuple,
        "TUPLE1": _Walker.op_tuple1, "TUPLE2": _Walker.op_tuple2, "TUPLE3": _Walker.op_tuple3,
        "EMPTY_LIST": _Walker.op_empty_list, "LIST": _Walker.op_list,
        "EMPTY_DICT": _Walker.op_empty_dict, "DICT": _Walker.op_dict,
        "EMPTY_SET": _Walker.op_empty_set, "FROZENSET": _Walker.op_frozenset,
        "APPEND": _Walker.op_append, "APPENDS": _Walker.op_appends,
        "SETITEM": _Walker.op_setitem, "SETITEMS": _Walker.op_setitems,
        "ADDITEMS": _Walker.op_additems, "GET": _Walker.op_get, "BINGET": _Walker.op_binget,
        "LONG_BINGET": _Walker.op_long_binget, "PUT": _Walker.op_put,
        "BINPUT": _Walker.op_binput, "LONG_BINPUT": _Walker.op_long_binput,
        "MEMOIZE": _Walker.op_memoize, "GLOBAL": _Walker.op_global,
        "STACK_GLOBAL": _Walker.op_stack_global, "EXT1": _Walker.op_ext1,
        "EXT2": _Walker.op_ext2, "EXT4": _Walker.op_ext4, "REDUCE": _Walker.op_reduce,
        "NEWOBJ": _Walker.op_newobj, "NEWOBJ_EX": _Walker.op_newobj_ex,
        "INST": _Walker.op_inst, "OBJ": _Walker.op_obj, "PERSID": _Walker.op_persid,
        "BINPERSID": _Walker.op_binpersid, "BUILD": _Walker.op_build,
    }
    # opcodes of a future protocol are not in the table: the walk refuses them
    for name, fn in table.items():
        _DISPATCH[ord(names[name])] = fn


_register()


# -- artifacts -----------------------------------------------------------------

_COMPRESSED = (  # joblib's detection order and magic numbers
    (b"ZF", "joblib<0.10"),
    (b"\x78", "zlib"),
    (b"\x1f\x8b", "gzip"),
    (b"BZ", "bz2"),
    (b"\x5d\x00", "lzma"),
    (b"\xfd\x37\x7a\x58\x5a", "xz"),
    (b"\x04\x22\x4d\x18", "lz4"),
)
_ZIP = b"PK\x03\x04"


def compression_of(head: bytes) -> str | None:
    """The compression joblib.load would assume for a file starting with
    ``head`` (None: not compressed)."""
    for magic, name in _COMPRESSED:
        if head.startswith(magic):
            return name
    return None


def _open_decompressed(fp, compression: str | None):
    if compression is None:
        return fp
    if compression == "zlib":
        return io.BufferedReader(_ZlibRaw(fp, zlib.MAX_WBITS), _CHUNK)
    if compression == "gzip":
        return io.BufferedReader(_ZlibRaw(fp, 31), _CHUNK)
    if compression == "bz2":
        return bz2.BZ2File(fp, "rb")
    if compression in ("lzma", "xz"):
        return lzma.LZMAFile(fp, "rb")
    if compression == "lz4":
        try:
            import lz4.frame  # type: ignore[import-not-found]
        except ImportError:
            raise ScanError("lz4-compressed joblib file, and the lz4 package is not installed; "
                            "re-save it with compress=('zlib', 3)") from None
        return lz4.frame.LZ4FrameFile(fp, "rb")
    if compression == "joblib<0.10":
        raise ScanError("a joblib < 0.10 file (arrays in companion files); re-save it with a current joblib")
    raise ScanError(f"unknown compression {compression}")


def sniff(head: bytes) -> str | None:
    """What pickle-ish content a file starting with ``head`` holds: "pickle",
    "joblib-<compression>", "torch-zip" (checked further by the caller), or
    None. Protocol 0/1 pickles are only recognised by the caller's context."""
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(_ZIP):
        return "zip"
    comp = compression_of(head)
    if comp == "zlib":
        if len(head) < 2 or (head[0] * 256 + head[1]) % 31 != 0:
            return None
    if comp == "lzma" and head[:3] != b"\x5d\x00\x00":
        return None
    if comp is not None:
        return f"joblib-{comp}"
    return None


def _scan_stream(fp, findings: _Findings, label: str, *, joblib: bool) -> None:
    raw = _Raw(fp)
    _Walker(raw, findings, joblib=joblib, label=label).run()


def _scan_file(path: Path, label: str, findings: _Findings) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(0)
        if head.startswith(_ZIP):
            _scan_zip(path, label, findings)
            return
        comp = compression_of(head)
        fp = _open_decompressed(f, comp)
        try:
            _scan_stream(fp, findings, label, joblib=True)
        except (EOFError, OSError, lzma.LZMAError) as e:
            raise ScanError(f"cannot decompress: {e}") from None


def _scan_zip(path: Path, label: str, findings: _Findings) -> None:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ScanError(f"not a readable zip archive ({e})") from None
    with zf:
        members = [n for n in zf.namelist() if n.endswith(".pkl")]
        if not members:
            raise ScanError("a zip archive with no pickles in it")
        findings.torch = True
        findings.allowlist = findings.allowlist + TORCH_ALLOWLIST
        for name in members:
            with zf.open(name) as member:
                _scan_stream(member, findings, f"{label}:{name}", joblib=False)


def _verdict(findings: _Findings, labels: list[str], error: str | None) -> PickleVerdict:
    refused = sorted(findings.refused)
    parts = []
    by_origin: dict[str, list[str]] = {}
    for r in refused:
        if not r.startswith("<"):
            by_origin.setdefault(findings.origin.get(r, ", ".join(labels)), []).append(
                f"{r} ({findings.refused[r]})")
    parts += [f"{origin}: imports {', '.join(items)}" for origin, items in by_origin.items()]
    parts += [findings.refused[r] for r in refused if r.startswith("<")]
    if error:
        parts.append(f"cannot be scanned: {error}")
    if parts:
        reason = "; ".join(parts)
    else:
        reason = (f"{', '.join(labels)}: {findings.streams} pickle stream(s) import only allowlisted globals"
                  f" ({len(findings.globals)})")
    return PickleVerdict(safe=not parts, globals=sorted(findings.globals),
                         refused=refused + (["<unscannable>"] if error else []),
                         reason=reason, files=labels, streams=findings.streams)


def scan(path: str | Path, *, allowlist: Iterable[str] | None = None,
         denylist: Iterable[str] | None = None, label: str | None = None) -> PickleVerdict:
    """Scan one file (pickle, joblib, or PyTorch zip). Never unpickles."""
    return scan_files([Path(path)], allowlist=allowlist, denylist=denylist,
                      labels=[label] if label else None)


def scan_files(paths: list[Path], *, allowlist: Iterable[str] | None = None,
               denylist: Iterable[str] | None = None,
               labels: list[str] | None = None) -> PickleVerdict:
    """Scan several files into one verdict (the union of their globals)."""
    allow = tuple(DEFAULT_ALLOWLIST if allowlist is None else allowlist)
    deny = tuple(DEFAULT_DENYLIST if denylist is None else denylist)
    labels = labels or [Path(p).name for p in paths]
    findings = _Findings(allow, deny, torch=False)
    error = None
    for path, label in zip(paths, labels):
        per_file = _Findings(allow, deny, torch=False)
        try:
            _scan_file(Path(path), label, per_file)
        except ScanError as e:
            error = f"{label}: {e}"
        except RecursionError:
            error = f"{label}: nested too deeply"
        findings.globals |= per_file.globals
        for k, v in per_file.refused.items():
            if k not in findings.refused:
                findings.refused[k] = v
                findings.origin[k] = per_file.origin.get(k, label)
        findings.streams += per_file.streams
        if error:
            break
    return _verdict(findings, labels, error)


def scan_bytes(data: bytes, *, allowlist: Iterable[str] | None = None,
               denylist: Iterable[str] | None = None, label: str = "<bytes>",
               joblib: bool = True) -> PickleVerdict:
    """Scan an in-memory pickle (a single stream, optionally joblib-compressed)."""
    allow = tuple(DEFAULT_ALLOWLIST if allowlist is None else allowlist)
    deny = tuple(DEFAULT_DENYLIST if denylist is None else denylist)
    findings = _Findings(allow, deny, torch=False)
    error = None
    try:
        comp = compression_of(data[:8]) if joblib else None
        fp = _open_decompressed(io.BytesIO(data), comp)
        _scan_stream(fp, findings, label, joblib=joblib)
    except ScanError as e:
        error = str(e)
    except (EOFError, OSError, lzma.LZMAError) as e:
        error = f"cannot decompress: {e}"
    return _verdict(findings, [label], error)
