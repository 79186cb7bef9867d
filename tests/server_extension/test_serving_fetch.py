"""The serving pods' fetch step on plain folders: it copies a version and refuses
files that differ from what was registered (no cluster needed; the e2e run is in
test_models_e2e)."""
from __future__ import annotations

import threading

from kubelab.server_extension.serving import fetch


def _version(root, files: dict[str, bytes]):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def test_copies_every_file_and_checks_the_registered_digest(tmp_path, capsys):
    src = _version(tmp_path / "v1", {"model.onnx": b"\x08\x01onnx", "extra/labels.txt": b"setosa\n"})
    sha, size = fetch.digest(str(src), fetch.files_of(str(src)))
    assert size == len(b"\x08\x01onnx") + len(b"setosa\n")
    dest = tmp_path / "models"
    assert fetch.main([str(src), str(dest), "--sha256", sha]) == 0
    assert (dest / "model.onnx").read_bytes() == b"\x08\x01onnx"
    assert (dest / "extra/labels.txt").read_text() == "setosa\n"
    assert "2 file(s) copied" in capsys.readouterr().out


def test_a_file_changed_after_registration_is_refused_with_a_one_line_reason(tmp_path, capsys):
    src = _version(tmp_path / "v1", {"model.onnx": b"registered"})
    sha, _ = fetch.digest(str(src), fetch.files_of(str(src)))
    (src / "model.onnx").write_bytes(b"swapped later")
    assert fetch.main([str(src), str(tmp_path / "out"), "--sha256", sha, "--wait", "0.3"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "do not match the registered digest" in err and "new version" in err


def test_an_added_or_renamed_file_changes_the_digest(tmp_path):
    a = _version(tmp_path / "a", {"model.onnx": b"x"})
    b = _version(tmp_path / "b", {"model.onnx": b"x", "more.bin": b""})
    c = _version(tmp_path / "c", {"renamed.onnx": b"x"})
    digests = {fetch.digest(str(p), fetch.files_of(str(p)))[0] for p in (a, b, c)}
    assert len(digests) == 3


def test_a_version_whose_files_are_gone_says_so(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for src in (tmp_path / "empty", tmp_path / "missing"):
        assert fetch.main([str(src), str(tmp_path / "out"), "--wait", "0"]) == 1
        assert "holds no files" in capsys.readouterr().err


def test_files_that_show_late_in_the_mount_are_waited_for(tmp_path):
    # s3fs caches lookups for seconds: a version uploaded just now can show late.
    src, dest = tmp_path / "v1", tmp_path / "models"
    sha, _ = fetch.digest(str(_version(tmp_path / "ref", {"model.onnx": b"late"})), ["model.onnx"])
    src.mkdir()
    (src / "model.onnx").write_bytes(b"la")  # a stale, partial view first
    timer = threading.Timer(0.5, lambda: (src / "model.onnx").write_bytes(b"late"))
    timer.start()
    try:
        assert fetch.copy_when_visible(str(src), str(dest), sha, wait=10, every=0.1) == 1
    finally:
        timer.join()
    assert (dest / "model.onnx").read_bytes() == b"late"
