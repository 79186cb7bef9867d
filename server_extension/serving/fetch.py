"""A serving pod's first step: copy one registered model version into the pod.

The version's files are read from the node's S3 mount (the same s3fs mount the
user's home comes from), which the pod sees read-only as the home's subPath
(the version is ``.kubelab/models/<name>/<version>`` in it). So a serving pod holds no S3
credentials at all: nothing expires under a long-running service, and a
replica that starts months later fetches the same way.

The copy is checked against the digest taken at registration (sha256 over the
files' names and contents), so a replica serves exactly the bytes that were
validated, even if someone has since changed the files in their home.

    python -m kubelab.server_extension.serving.fetch SRC DEST [--sha256 HEX]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time


class FetchError(Exception):
    """The version cannot be served from these files (said in one line)."""


def files_of(root: str) -> list[str]:
    """Every file under ``root``, as sorted relative paths."""
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def digest(root: str, files: list[str]) -> tuple[str, int]:
    """One sha256 over the files' names and contents, and their total size."""
    h, size = hashlib.sha256(), 0
    for f in files:
        h.update(f.encode() + b"\0")
        with open(os.path.join(root, f), "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
    return h.hexdigest(), size


def copy_verified(src: str, dest: str, sha256: str = "") -> int:
    """Copy the files under ``src`` into ``dest``, check the copy against
    ``sha256`` (when given) and return how many files there were."""
    files = files_of(src) if os.path.isdir(src) else []
    if not files:
        raise FetchError(f"{src} holds no files: the version's artifacts are gone")
    for f in files:
        target = os.path.join(dest, f)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(src, f), target)
    if sha256:
        got, _ = digest(dest, files)  # the copy, not the source: what will be served
        if got != sha256:
            raise FetchError(f"the files in {src} do not match the registered digest "
                             f"(sha256 {got[:12]}…, registered {sha256[:12]}…): they were changed after "
                             "registration; register them as a new version")
    return len(files)


def copy_when_visible(src: str, dest: str, sha256: str = "", wait: float = 30, every: float = 1) -> int:
    """``copy_verified``, retried for ``wait`` seconds: s3fs caches what it has
    looked up (stat cache, the kernel's entry cache) for seconds, so files
    uploaded just now through the S3 API may show late or with a stale size."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return copy_verified(src, dest, sha256)
        except (FetchError, OSError):
            if time.monotonic() >= deadline:
                raise
            _clear(dest)
            time.sleep(every)


def _clear(folder: str) -> None:
    """Empty ``folder`` (in a pod it is a volume's mount point, which stays)."""
    for entry in os.scandir(folder) if os.path.isdir(folder) else ():
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kubelab.server_extension.serving.fetch",
                                description="Copy a registered model version into a serving pod.")
    p.add_argument("src", help="the version's folder in the read-only S3 mount")
    p.add_argument("dest", help="the pod's model folder")
    p.add_argument("--sha256", default="", help="the digest taken at registration")
    p.add_argument("--wait", type=float, default=30, help="seconds to wait for the files to show in the mount")
    args = p.parse_args(argv)
    try:
        n = copy_when_visible(args.src, args.dest, args.sha256, args.wait)
    except (FetchError, OSError) as e:
        print(f"fetch-model: {e}", file=sys.stderr)
        return 1
    print(f"fetch-model: {n} file(s) copied to {args.dest}" + (" and verified" if args.sha256 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
