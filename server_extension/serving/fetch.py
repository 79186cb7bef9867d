"""A serving pod's first step: copy one registered model version into the pod.

The version's files are read from the node's S3 mount (the same s3fs mount the
user's home comes from), which the pod sees read-only as one subPath
(``users/<user>/models/<name>/<version>``). So a serving pod holds no S3
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kubelab.server_extension.serving.fetch",
                                description="Copy a registered model version into a serving pod.")
    p.add_argument("src", help="the version's folder in the read-only S3 mount")
    p.add_argument("dest", help="the pod's model folder")
    p.add_argument("--sha256", default="", help="the digest taken at registration")
    args = p.parse_args(argv)
    try:
        n = copy_verified(args.src, args.dest, args.sha256)
    except (FetchError, OSError) as e:
        print(f"fetch-model: {e}", file=sys.stderr)
        return 1
    print(f"fetch-model: {n} file(s) copied to {args.dest}" + (" and verified" if args.sha256 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
