"""``%kubelab datasets ...`` in a real IPython shell, over the real DatasetService with an
in-memory S3 and apiserver (the stand-ins of tests/server_extension/test_datasets_unit.py)."""
from __future__ import annotations

import io

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from kubelab.kernels import magics as M
from kubelab.server_extension.services import Services
from tests.server_extension.test_datasets_unit import FakeKube, FakeS3, S


@pytest.fixture(scope="module")
def shell():
    c = Config()
    c.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=c)
    ip.run_line_magic("load_ext", "kubelab.kernels")
    return ip


@pytest.fixture
def ip(shell, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    services = Services.create(Config({"Workspace": {"settings_json": S.to_json(), "home_dir": str(tmp_path)}}))
    services.workspace.__dict__["kube"] = FakeKube(S.namespace)
    fake = FakeS3()
    fake.on_request = services.datasets.count_request
    services.datasets.s3 = fake
    df = pd.DataFrame({"id": range(30), "city": ["Berlin", "Paris", "Rome"] * 10})
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    fake.objects.update({"datasets/cities/a.parquet": buf.getvalue(), "datasets/cities/b.csv":
                         df.to_csv(index=False).encode(), "users/alice/notes/x.json": b'[{"a": 1}]'})
    magics = shell.magics_manager.registry["KubelabMagics"]
    magics._services = services
    magics.show_widgets = False
    yield shell
    magics._services = None
    magics.show_widgets = True


def run(ip, capsys, code: str):
    res = ip.run_cell(code)
    out, err = capsys.readouterr()
    assert res.error_before_exec is None and res.error_in_exec is None, (out, err)
    return res.result, out, err


def test_usage_lists_the_datasets_commands():
    assert "%kubelab datasets ls [PREFIX] [--token T]" in M.USAGE
    assert set(M.VERBS["datasets"]) >= {"ls", "preview", "snippet", "register", "registered", "upload", "download"}


def test_ls_pages_and_displays(ip, capsys):
    page, out, err = run(ip, capsys, "%kubelab datasets ls datasets/cities/ --page-size 1")
    assert [o["name"] for o in page["objects"]] == ["a.parquet"] and page["s3_requests"] == 1 and not err
    text = page._kl_bundle()[0]
    assert "a.parquet" in text and f"--token {page['next_token']}" in text
    nxt, _, _ = run(ip, capsys, f"%kubelab datasets ls datasets/cities/ --page-size 1 --token {page['next_token']}")
    assert [o["name"] for o in nxt["objects"]] == ["b.csv"] and nxt["next_token"] is None
    roots, _, _ = run(ip, capsys, "%kubelab datasets ls")
    assert [f["prefix"] for f in roots["folders"]] == ["users/alice/", "datasets/"]


def test_preview_show_snippet(ip, capsys):
    p, _, err = run(ip, capsys, "%kubelab datasets preview datasets/cities/a.parquet --rows 4")
    assert p["row_count"] == 4 and p["rows"][1] == {"id": 1, "city": "Paris"} and not err
    text, markup = p._kl_bundle()
    assert "Paris" in text and "statistics" in text and "<table" in markup
    o, _, _ = run(ip, capsys, "%kubelab datasets show s3://kubelab/datasets/cities/b.csv")
    assert o["path"] == "/home/jovyan/datasets/cities/b.csv"
    sn, _, _ = run(ip, capsys, "%kubelab datasets snippet datasets/cities/b.csv")
    assert "pd.read_csv('/home/jovyan/datasets/cities/b.csv')" in sn._kl_bundle()[0]


def test_register_registered_unregister(ip, capsys):
    d, _, err = run(ip, capsys, "%kubelab datasets register cities --uri s3://kubelab/datasets/cities/a.parquet "
                                "--description 'European cities' --tag geo,eu --tag demo")
    assert d["tags"] == ["geo", "eu", "demo"] and d["etag"] and not err
    found, _, _ = run(ip, capsys, "%kubelab datasets registered european --tag geo")
    assert [x["name"] for x in found] == ["cities"] and "cities" in found._kl_bundle()[0]
    gone, _, _ = run(ip, capsys, "%kubelab datasets unregister cities")
    assert gone["deleted"] is True


def test_upload_and_download_wait_and_print_progress(ip, capsys, tmp_path):
    (tmp_path / "data.bin").write_bytes(b"x" * 50_000)
    up, out, err = run(ip, capsys, "%kubelab datasets upload data.bin users/alice/up/")
    assert up["status"] == "succeeded" and up["percent"] == 100.0 and up["key"] == "users/alice/up/data.bin"
    assert "kubelab: upload data.bin -> s3://kubelab/users/alice/up/data.bin: 100% of" in out and not err
    down, out, _ = run(ip, capsys, "%kubelab datasets download users/alice/up/data.bin copy/")
    assert down["status"] == "succeeded" and (tmp_path / "copy" / "data.bin").read_bytes() == b"x" * 50_000
    ts, _, _ = run(ip, capsys, "%kubelab datasets transfers")
    assert [t["direction"] for t in ts] == ["download", "upload"]


@pytest.mark.parametrize("line, words", [
    ("%kubelab datasets ls users/bob/", "outside what you may see"),
    ("%kubelab datasets preview datasets/cities/none.csv", "does not exist"),
    ("%kubelab datasets preview datasets/cities/a.parquet --rows 5000", "at most 1000 rows"),
    ("%kubelab datasets register Cities --uri s3://kubelab/datasets/cities/a.parquet", "is invalid"),
    ("%kubelab datasets register x", "--uri"),
    ("%kubelab datasets registered --mine --shared", "not both"),
    ("%kubelab datasets upload missing.bin users/alice/x", "not a file in your home"),
    ("%kubelab datasets bogus", "unknown datasets command 'bogus'"),
    ("%kubelab datasets", "datasets needs a command"),
])
def test_mistakes_are_one_line(ip, capsys, line, words):
    value, out, err = run(ip, capsys, line)
    assert value is None and "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kubelab: ") and words in lines[0], err
