"""Format detection from names and content, and declared-format confirmation."""
from __future__ import annotations

import os
import shutil
import zipfile

import pytest

from kubelab.server_extension.modelcheck import formats
from kubelab.server_extension.modelcheck.formats import FormatError, confirm, detect


def test_formats_are_the_loaders_formats():
    from kubelab.server_extension.serving import loaders

    assert formats.FORMATS == loaders.FORMATS


@pytest.mark.parametrize("name,fmt,kind,evidence", [
    ("joblib", "sklearn", "pickle", "pickle protocol"),
    ("joblib-z3", "sklearn", "joblib-zlib", "joblib zlib header"),
    ("pickle", "sklearn", "pickle", "pickle protocol"),
    ("onnx", "onnx", "onnx", "parses as onnx.ModelProto"),
    ("onnx-truncated", "onnx", "onnx", "does not parse"),
    ("xgboost", "xgboost", "xgboost-json", '"learner"'),
    ("lightgbm", "lightgbm", "lightgbm", "version=v"),
    ("safetensors", "safetensors", "safetensors", "8-byte little-endian header length"),
])
def test_detect(artifacts, name, fmt, kind, evidence):
    d = detect(artifacts[name])
    assert (d.format, d.kind) == (fmt, kind)
    assert evidence in d.evidence
    assert confirm(None, d) == fmt
    assert confirm(fmt, d) == fmt
    assert d.pickles == ((d.file,) if fmt == "sklearn" else ())


def test_content_wins_over_names(artifacts, tmp_path):
    """An ONNX file called model.pkl is ONNX; a pickle called model.onnx is a pickle."""
    shutil.copy(artifacts["onnx"] / "model.onnx", tmp_path / "model.pkl")
    d = detect(tmp_path)
    assert d.format == "onnx" and d.file == "model.pkl"
    (tmp_path / "model.pkl").unlink()
    shutil.copy(artifacts["pickle"] / "model.pkl", tmp_path / "model.onnx")
    d = detect(tmp_path)
    assert d.format == "sklearn" and d.pickles == ("model.onnx",)


def test_declared_format_contradicted_by_content(artifacts):
    with pytest.raises(FormatError) as e:
        confirm("onnx", detect(artifacts["pickle"], prefer="onnx"))
    assert str(e.value).startswith("you said onnx but model.pkl is a pickle")
    with pytest.raises(FormatError, match="you said xgboost but model.txt is a LightGBM text model"):
        confirm("xgboost", detect(artifacts["lightgbm"], prefer="xgboost"))


def test_unknown_declared_format():
    with pytest.raises(FormatError, match=r"unknown format 'keras'; supported formats: sklearn \(.joblib/.pkl\), "
                                          r"xgboost"):
        confirm("keras", formats.Detected("onnx", "model.onnx", ""))


@pytest.mark.parametrize("content,name,what", [
    (b"\x00\x01\x02garbage" * 10, "model.bin", "not a recognised model file"),
    (b"hello world\n", "notes.txt", "a text file that is not a LightGBM model"),
    (b'{"a": 1}', "config.json", "a JSON file that is not an xgboost model"),
    (b"\x89HDF\r\n\x1a\n" + b"\x00" * 100, "model.h5", "HDF5"),
    (b"\x93NUMPY\x01\x00" + b"\x00" * 100, "weights.npy", "numpy .npy"),
])
def test_unknown_files_are_invalid_listing_the_supported_formats(tmp_path, content, name, what):
    (tmp_path / name).write_bytes(content)
    d = detect(tmp_path)
    assert d.format is None
    with pytest.raises(FormatError) as e:
        confirm(None, d)
    msg = str(e.value)
    assert what in msg and name in msg
    assert "supported formats: sklearn (.joblib/.pkl), xgboost (.json/.ubj), lightgbm (.txt), onnx (.onnx), " \
           "torchscript (.pt), safetensors (.safetensors)" in msg


def test_empty_directory(tmp_path):
    with pytest.raises(FormatError,
                       match=r"no supported model file found \(the directory has no files\); supported formats"):
        confirm(None, detect(tmp_path))


def test_not_a_directory(tmp_path):
    with pytest.raises(FormatError, match="is not a directory"):
        detect(tmp_path / "missing")


def test_several_formats_need_a_declaration(artifacts, tmp_path):
    shutil.copy(artifacts["onnx"] / "model.onnx", tmp_path)
    shutil.copy(artifacts["pickle"] / "model.pkl", tmp_path)
    d = detect(tmp_path)
    assert d.format is None and d.pickles == ("model.pkl",)
    with pytest.raises(FormatError, match=r"several model files of different formats: model.onnx \(onnx\), "
                                          r"model.pkl \(sklearn\); declare the format"):
        confirm(None, d)
    d = detect(tmp_path, prefer="onnx")
    assert confirm("onnx", d) == "onnx"
    assert d.pickles == ("model.pkl",)  # still found: the pickle gate applies to it


def test_side_files_are_ignored(artifacts, tmp_path):
    shutil.copy(artifacts["xgboost"] / "model.json", tmp_path)
    (tmp_path / "README.md").write_text("my model\n")
    (tmp_path / "metrics.json").write_text('{"auc": 0.9}')
    assert confirm(None, detect(tmp_path)) == "xgboost"


def test_symlinks_out_of_the_directory_are_refused(tmp_path):
    (tmp_path / "m").mkdir()
    os.symlink("/etc/passwd", tmp_path / "m" / "model.pkl")
    with pytest.raises(FormatError, match="symbolic link out of the model directory"):
        detect(tmp_path / "m")


def test_xgboost_ubj_and_torch_archives(tmp_path, data):
    import xgboost

    X, y = data
    xgboost.XGBClassifier(n_estimators=2).fit(X, y).save_model(tmp_path / "model.ubj")
    assert detect(tmp_path).kind == "xgboost-ubj"
    (tmp_path / "model.ubj").unlink()

    with zipfile.ZipFile(tmp_path / "model.pt", "w") as zf:
        zf.writestr("model/data.pkl", b"\x80\x02}.")
        zf.writestr("model/constants.pkl", b"\x80\x02).")
        zf.writestr("model/code/__torch__/m.py", "")
    d = detect(tmp_path)
    assert (d.format, d.kind, d.pickles) == ("torchscript", "torchscript", ())

    with zipfile.ZipFile(tmp_path / "model.pt", "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}.")
        zf.writestr("archive/data/0", b"\x00" * 16)
    d = detect(tmp_path)
    assert d.format is None and d.pickles == ("model.pt",)
    with pytest.raises(FormatError, match="you said torchscript but model.pt is a torch.save checkpoint"):
        confirm("torchscript", d)
