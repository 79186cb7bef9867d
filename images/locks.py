"""The images' Python requirement locks: what each lock is made of, and how.

    python images/locks.py compile [IMAGE/LOCK ...]   # (re)write locks; `make locks`
    python images/locks.py list

Each lock (``images/<image>/<lock>``) pins, with hashes, everything an image
installs for CPython 3.11 on Linux x86_64 (the ``python:3.11-slim-bookworm``
base of every Python image): the kubelab extras it needs (from pyproject.toml,
so they are declared once) plus its own ``.in`` files. Recompiling keeps the
pins already in a lock unless an input needs a change (uv prefers them), so
`make locks` after editing an ``.in`` moves only what must move; delete a lock
to re-resolve it from scratch. tests/deploy/test_images.py checks that every
lock is up to date with its inputs and that pip resolves it for the target.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "images"
# The images' interpreter and platform (python:3.11-slim-bookworm: glibc 2.36).
PYTHON_VERSION = "3.11"
UV_PLATFORM = "x86_64-manylinux_2_36"
# pip takes the platform tags one by one: glibc 2.36 runs every manylinux tag up to it.
PIP_PLATFORMS = ([f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)]
                 + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"])
CACHE = Path(os.environ.get("KUBELAB_CACHE", Path.home() / ".cache" / "kubelab"))


@dataclass(frozen=True)
class Lock:
    image: str
    name: str                      # file name under images/<image>/
    extras: tuple[str, ...]        # kubelab extras from pyproject.toml
    inputs: tuple[str, ...]        # .in files, relative to the repository root

    @property
    def key(self) -> str:
        return f"{self.image}/{self.name}"

    @property
    def path(self) -> Path:
        return IMAGES / self.image / self.name


LOCKS: tuple[Lock, ...] = (
    Lock("hub", "requirements.txt", ("hub",), ("images/hub/requirements.in",)),
    Lock("singleuser", "requirements-cpu.txt", ("singleuser", "serving"), ("images/singleuser/ml-cpu.in",)),
    Lock("singleuser", "requirements-torch.txt", ("singleuser", "serving"), ("images/singleuser/ml-torch.in",)),
    Lock("runner", "requirements-cpu.txt", (), ("images/runner/requirements.in", "images/singleuser/ml-cpu.in")),
    Lock("runner", "requirements-torch.txt", (), ("images/runner/requirements.in", "images/singleuser/ml-torch.in")),
    Lock("serving", "requirements.txt", ("serving",), ("images/serving/requirements.in",)),
)


def uv() -> str:
    """uv from the virtualenv (the `dev` extra pins it), else from PATH."""
    here = Path(sys.executable).parent / "uv"
    found = str(here) if here.exists() else shutil.which("uv")
    if not found:
        raise SystemExit("uv not found: `make venv` installs it (pyproject.toml, extra `dev`)")
    return found


def compile_command(lock: Lock, output: Path) -> list[str]:
    cmd = [uv(), "pip", "compile", "pyproject.toml", *lock.inputs]
    for extra in lock.extras:
        cmd += ["--extra", extra]
    return cmd + ["--python-version", PYTHON_VERSION, "--python-platform", UV_PLATFORM,
                  "--generate-hashes", "--no-strip-markers", "--custom-compile-command", "make locks",
                  "--quiet", "--output-file", str(output)]


def compile_lock(lock: Lock, output: Path | None = None) -> subprocess.CompletedProcess:
    """Write the lock (to ``output``, default its own path), from the repository root."""
    env = {**os.environ, "UV_CACHE_DIR": str(CACHE / "uv")}
    return subprocess.run(compile_command(lock, output or lock.path), cwd=REPO, env=env,
                          capture_output=True, text=True)


def pip_target_args() -> list[str]:
    """pip's flags for the images' interpreter and platform (with --only-binary=:all:)."""
    args = ["--python-version", PYTHON_VERSION, "--implementation", "cp",
            "--abi", "cp" + PYTHON_VERSION.replace(".", ""), "--abi", "abi3", "--abi", "none"]
    for p in PIP_PLATFORMS:
        args += ["--platform", p]
    return args


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of a lock file."""
    out = {}
    for line in path.read_text().splitlines():
        m = _PIN.match(line)
        if m:
            out[canonical(m.group(1))] = m.group(2)
    return out


def select(keys: list[str]) -> list[Lock]:
    if not keys:
        return list(LOCKS)
    chosen = [lk for lk in LOCKS if lk.key in keys or lk.image in keys]
    unknown = set(keys) - {lk.key for lk in chosen} - {lk.image for lk in chosen}
    if unknown:
        raise SystemExit(f"unknown lock(s) {sorted(unknown)}; see `python images/locks.py list`")
    return chosen


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("compile", "list"):
        print("\n".join(__doc__.strip().splitlines()[2:4]), file=sys.stderr)
        return 2
    if argv[0] == "list":
        for lk in LOCKS:
            print(f"{lk.key}: extras {','.join(lk.extras) or '-'}; inputs {' '.join(lk.inputs)}")
        return 0
    for lk in select(argv[1:]):
        print(f"locks: {lk.key}", file=sys.stderr)
        proc = compile_lock(lk)
        if proc.returncode:
            sys.stderr.write(proc.stderr)
            return proc.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
