"""The static pickle scanner: benign models pass with exactly the globals the
real unpickler imports; every malicious variant is refused without being
loaded (and each payload is shown to be live by a control run)."""
from __future__ import annotations

import _compat_pickle
import importlib.util
import io
import pickle
import struct
import zipfile

import joblib
import numpy as np
import pytest

from kubelab.server_extension.modelcheck import pickles
from kubelab.server_extension.modelcheck.pickles import scan, scan_bytes

from .conftest import PAYLOADS, OsSystem, control, frame_hidden_joblib, joblib_bytes


class _Recorder(pickle._Unpickler):
    """The real (pure-Python) unpickler, recording every global it imports."""

    def find_class(self, module, name):
        if self.proto < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        self.seen.add(f"{module}.{name}")
        return super().find_class(module, name)


def _imported_by_pickle(data: bytes) -> set[str]:
    r = _Recorder(io.BytesIO(data))
    r.seen = set()
    r.load()
    return r.seen


def _imported_by_joblib(path, monkeypatch) -> set[str]:
    from joblib import numpy_pickle

    seen = set()
    original = numpy_pickle.NumpyUnpickler.find_class

    def find_class(self, module, name):
        if self.proto < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        seen.add(f"{module}.{name}")
        return original(self, module, name)

    monkeypatch.setattr(numpy_pickle.NumpyUnpickler, "find_class", find_class)
    joblib.load(path)
    return seen


@pytest.fixture(scope="module")
def benign(data, logreg):
    import lightgbm
    import xgboost
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = data
    return {
        "logreg": logreg,
        "forest-pipeline": make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5, random_state=0)
                                         ).fit(X, y),
        "xgboost": xgboost.XGBClassifier(n_estimators=3).fit(X, y),
        "lightgbm": lightgbm.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, y),
        "arrays": {"obj": np.array(["a", 1, None], dtype=object), "rec": np.zeros(3, [("a", "i4"), ("b", "U3")]),
                   "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)), "empty": np.zeros((0, 5)),
                   "scalar": np.float32(3.5), "big": np.arange(300_000, dtype=np.int64)},
    }


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_benign_pickles_are_safe_with_the_exact_globals(benign, protocol):
    for name, obj in benign.items():
        data = pickle.dumps(obj, protocol=protocol)
        v = scan_bytes(data)
        assert v.safe, (name, v.reason)
        assert set(v.globals) == _imported_by_pickle(data), name


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_benign_joblib_files_are_safe_with_the_exact_globals(benign, tmp_path, monkeypatch, compress, protocol):
    for name, obj in benign.items():
        path = tmp_path / f"{name}.joblib"
        joblib.dump(obj, path, compress=compress, protocol=protocol)
        v = scan(path)
        assert v.safe, (name, compress, protocol, v.reason)
        assert set(v.globals) == _imported_by_joblib(path, monkeypatch), name
    # the object array is a nested pickle stream joblib writes after the wrapper
    assert v.streams >= 2


def test_decompression_matches_joblib(benign, tmp_path):
    """The stdlib readers see the same bytes joblib's decompressors do."""
    from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap

    for compress in [3, ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)]:
        path = tmp_path / "m.joblib"
        joblib.dump(benign["forest-pipeline"], path, compress=compress)
        with open(path, "rb") as f, _validate_fileobject_and_memmap(f, str(path)) as (fobj, _):
            theirs = fobj.read()
        with open(path, "rb") as f:
            comp = pickles.compression_of(f.read(8))
            f.seek(0)
            ours = pickles._open_decompressed(f, comp).read()
        assert comp and ours == theirs, compress


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_malicious_pickles_are_refused_naming_the_global(name, tmp_path):
    make, expected, says = PAYLOADS[name]
    control_marker = tmp_path / "control-marker"
    control(make(control_marker), tmp_path)
    assert control_marker.exists(), "the payload is not live: the test would prove nothing"

    marker = tmp_path / "marker"
    v = scan_bytes(make(marker))
    assert not v.safe
    assert expected in v.refused
    assert says in v.reason
    assert not marker.exists()


def test_stack_global_from_computed_strings_is_unresolvable(tmp_path):
    v = scan_bytes(PAYLOADS["stack-global-concat"][0](tmp_path / "m"))
    assert "<unresolved STACK_GLOBAL>" in v.refused
    assert "_operator.add" in v.refused  # the concatenation itself is denylisted too
    assert "computed value, not a constant string" in v.reason


def test_memoized_stack_global_operands_are_resolved(tmp_path):
    v = scan_bytes(PAYLOADS["stack-global-memo"][0](tmp_path / "m"))
    assert v.globals == ["posix.system"]
    assert v.refused == ["posix.system"]


def test_malicious_object_next_to_numpy_arrays_in_joblib(tmp_path):
    """joblib writes raw array buffers between opcodes: the scanner must read
    past them (and into compressed data) to find what comes after."""
    for compress in (0, 3, ("xz", 1)):
        control_marker = tmp_path / "control-marker"
        payload = {"weights": np.arange(5000.0), "evil": OsSystem(control_marker), "bias": np.ones(3)}
        control(joblib_bytes(payload, compress=compress), tmp_path, loader="joblib")
        assert control_marker.exists()
        control_marker.unlink()

        marker = tmp_path / "marker"
        path = tmp_path / "model.joblib"
        joblib.dump({"weights": np.arange(5000.0), "evil": OsSystem(marker), "bias": np.ones(3)}, path,
                    compress=compress)
        v = scan(path)
        assert not v.safe and v.refused == ["posix.system"], v.reason
        assert not marker.exists()


def test_malicious_object_inside_an_object_array_in_joblib(tmp_path):
    """Object arrays are a nested pickle stream inside the joblib file."""
    marker = tmp_path / "marker"
    path = tmp_path / "model.joblib"
    joblib.dump({"a": np.arange(10), "objs": np.array([1, OsSystem(marker)], dtype=object)}, path)
    v = scan(path)
    assert v.refused == ["posix.system"]
    assert v.streams == 2


def test_payload_hidden_by_framing_is_found(tmp_path):
    control_marker = tmp_path / "control-marker"
    control(frame_hidden_joblib(control_marker), tmp_path, loader="joblib")
    assert control_marker.exists(), "joblib no longer runs the hidden frame: rebuild the test"

    marker = tmp_path / "marker"
    v = scan_bytes(frame_hidden_joblib(marker))
    assert v.refused == ["posix.system"], v.reason


def test_compat_names_of_protocol_2_are_mapped():
    # __builtin__.eval is builtins.eval once pickle maps Python 2 names
    data = b"\x80\x02c__builtin__\neval\nX\x03\x00\x00\x001+1\x85R."
    v = scan_bytes(data)
    assert v.refused == ["builtins.eval"]


@pytest.mark.parametrize("module,name,why", [
    ("numpy", "load", "denylisted"),
    ("numpy", "ndarray.tofile", "walks through 'tofile'"),
    ("sklearn.base", "os.system", "walks through 'os'"),
    ("numpy", "ndarray.__reduce_ex__", "private attribute"),
    ("joblib", "Memory", "denylisted"),
    ("joblib.numpy_pickle", "NumpyPickler", "not on the allowlist"),
    ("joblib.numpy_pickle_compat", "NDArrayWrapper", "denylisted"),
    ("sklearn.datasets", "fetch_openml", "denylisted"),
    ("scipy.io", "savemat", "denylisted"),
    ("__main__", "MyTransformer", "not on the allowlist"),
    ("antigravity", "x", "not on the allowlist"),
])
def test_policy(module, name, why):
    data = b"\x80\x04" + b"\x8c" + bytes([len(module)]) + module.encode() + b"\x8c" + bytes([len(name)]) \
        + name.encode() + b"\x93."
    v = scan_bytes(data)
    assert not v.safe
    assert why in v.reason, v.reason


def test_allowlist_can_be_extended():
    data = b"\x80\x04\x8c\x08__main__\x8c\x05Model\x93)\x81."
    assert not scan_bytes(data).safe
    assert scan_bytes(data, allowlist=pickles.DEFAULT_ALLOWLIST + ("__main__.Model",)).safe
    # an allowlist replaces the default one; joblib's array placeholder is
    # part of the file format and always allowed
    assert scan_bytes(joblib_bytes(np.arange(3.0)), allowlist=("numpy.",)).safe
    # ... but the denylist always wins
    evil = b"\x80\x04\x8c\x05posix\x8c\x06system\x93."
    assert not scan_bytes(evil, allowlist=("posix.",)).safe


@pytest.mark.parametrize("data,why", [
    (b"\x80\x04\x82\x01.", "extension registry"),
    (b"\x80\x04\x8c\x011\x94Q.", "persistent ids"),
    (b"\x80\x05\x97.", "out-of-band"),
    (b"\x80\x04\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02f8\x85R)R.", "not an imported global"),
    (b"\x80\x04\x8c\x05numpy", "truncated"),
    (b"\x80\x04\xff.", "unknown opcode"),
    (b"\x80\x04\x95" + struct.pack("<Q", 1 << 40) + b".", "frame"),
])
def test_unreadable_or_unusual_streams_are_unsafe(data, why):
    v = scan_bytes(data)
    assert not v.safe
    assert why in v.reason, v.reason


def test_huge_arguments_are_skipped_not_buffered():
    # a 300 MB BINBYTES8 is skipped in chunks (and here it is truncated)
    data = b"\x80\x04\x8e" + struct.pack("<Q", 300 * 1024 * 1024) + b"abc"
    v = scan_bytes(data)
    assert not v.safe and "truncated" in v.reason


def test_wrapper_used_in_ways_joblib_never_writes():
    wrapper = b"\x8c\x13joblib.numpy_pickle\x8c\x11NumpyArrayWrapper\x93)\x81\x94"
    state = (b"}(\x8c\x08subclass\x8c\x05numpy\x8c\x07ndarray\x93\x8c\x05shape%s"
             b"\x8c\x05dtype\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02u1\x89\x88\x87Ru")
    good = state % b"K\x00\x85"
    # a well-formed empty array: fine
    assert scan_bytes(b"\x80\x04" + wrapper + good + b"b.").safe
    # built twice: joblib would read array data twice
    v = scan_bytes(b"\x80\x04" + wrapper + good + b"b" + b"0h\x00}b.")
    assert not v.safe and "built twice" in v.reason
    # a shape that is not a tuple of ints
    v = scan_bytes(b"\x80\x04" + wrapper + state % b"\x8c\x01x" + b"b.")
    assert not v.safe and "non-integer shape" in v.reason
    # the wrapper passed around as a value
    v = scan_bytes(b"\x80\x04" + wrapper + b"\x85.")
    assert not v.safe and "NumpyArrayWrapper used" in v.reason
    # the wrapper class called with REDUCE (joblib only ever writes NEWOBJ)
    v = scan_bytes(b"\x80\x04\x8c\x13joblib.numpy_pickle\x8c\x11NumpyArrayWrapper\x93)R.")
    assert not v.safe and "NumpyArrayWrapper used" in v.reason


def test_joblib_protocol_0_and_1_files_are_not_followed(tmp_path):
    # protocol < 2 rebuilds the wrapper with copyreg._reconstructor: refused
    # rather than modelled (joblib's default protocol is 4 or 5)
    path = tmp_path / "m.joblib"
    joblib.dump({"a": np.arange(3)}, path, protocol=1)
    v = scan(path)
    assert not v.safe and "protocol >= 2" in v.reason


def test_lz4_is_refused_when_it_cannot_be_read():
    have_lz4 = importlib.util.find_spec("lz4") is not None
    v = scan_bytes(b"\x04\x22\x4d\x18" + b"\x00" * 20)
    assert not v.safe
    if not have_lz4:
        assert "lz4 package is not installed" in v.reason


def _torch_data_pkl() -> bytes:
    """What torch.save writes for {"w": tensor of 4 floats} (protocol 2),
    written by hand: torch is not installed here."""
    def binunicode(s):
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    ordered_dict = b"ccollections\nOrderedDict\n)R"
    return (b"\x80\x02" + ordered_dict + b"("
            + binunicode("w")
            + b"ctorch._utils\n_rebuild_tensor_v2\n"
            + b"("                                   # args
            + b"(" + binunicode("storage") + b"ctorch\nFloatStorage\n" + binunicode("0")
            + binunicode("cpu") + b"K\x04tQ"       # BINPERSID (storage)
            + b"K\x00" + b"K\x04\x85" + b"K\x01\x85" + b"\x89" + ordered_dict
            + b"tR"                                  # _rebuild_tensor_v2(*args)
            + b"u.")                                 # SETITEMS


def test_torch_archives_pickles_are_scanned(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(OsSystem(marker), protocol=2))
        zf.writestr("archive/constants.pkl", pickle.dumps((), protocol=2))
        zf.writestr("archive/code/__torch__/m.py", "")
    v = scan(path)
    assert v.refused == ["posix.system"]
    assert "model.pt:archive/data.pkl" in v.reason
    # tensors rebuilt from persistent storages are fine
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", _torch_data_pkl())
        zf.writestr("archive/constants.pkl", pickle.dumps((), protocol=2))
    v = scan(path)
    assert v.safe, v.reason
    assert "torch._utils._rebuild_tensor_v2" in v.globals
