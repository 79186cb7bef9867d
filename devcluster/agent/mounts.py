"""Host-side mounts for mount propagation, and taking every agent mount down again.

A container sees the host's file system, with its volumes bind-mounted in a
private mount namespace (see shim.py), so by default nothing mounted inside
or below a volume later crosses between the container and the node, like the
kubelet's ``mountPropagation: None``. For ``HostToContainer`` (rslave) and
``Bidirectional`` (rshared) the shim instead attaches a clone of the host
mount at the volume's source, made with open_tree(2) while it is still in the
host's mount namespace: the clone stays in the peer group of the host mount,
so mounts travel host -> container (the shim makes it a slave) or both ways.

That needs the host mount holding the source to be shared, as containerd
requires. On a node whose / is shared (systemd's default) it already is; here
/ is private, so ``SharedMounts.ensure`` bind-mounts the node root (for
node-local paths, see ``NodeLocalPaths``) or the source itself onto itself and
marks it rshared, recording it so that ``unmount_under`` can take it, and any
FUSE mount a pod left below it, down again.
"""
from __future__ import annotations

import ctypes
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .store import read_json, write_json

log = logging.getLogger(__name__)

# Values of Mount.propagation (what the shim applies).
PRIVATE = "private"
RSLAVE = "rslave"
RSHARED = "rshared"
PROPAGATION = {None: PRIVATE, "None": PRIVATE, "HostToContainer": RSLAVE, "Bidirectional": RSHARED}

MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 0x2
UNMOUNT_PASSES = 20

_libc = ctypes.CDLL(None, use_errno=True)


def within(path: str, root: str) -> bool:
    """``path`` is ``root`` or lies below it (string comparison, no symlinks)."""
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mountinfo."""

    mount_id: int
    parent_id: int
    root: str
    mount_point: str
    optional: tuple[str, ...]
    fstype: str

    @property
    def shared(self) -> bool:
        return any(o.startswith("shared:") for o in self.optional)

    @property
    def slave(self) -> bool:
        return any(o.startswith("master:") for o in self.optional)


def parse_mountinfo(text: str) -> list[MountEntry]:
    out = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        out.append(MountEntry(mount_id=int(fields[0]), parent_id=int(fields[1]), root=_unescape(fields[3]),
                              mount_point=_unescape(fields[4]), optional=tuple(fields[6:sep]),
                              fstype=fields[sep + 1]))
    return out


def read_mountinfo() -> list[MountEntry]:
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def containing_mount(path: str, entries: list[MountEntry]) -> MountEntry | None:
    """The mount ``path`` lies on: the deepest mount point above it, the topmost of a stack."""
    best: MountEntry | None = None
    for e in entries:
        if within(path, e.mount_point) and (best is None or len(e.mount_point) >= len(best.mount_point)):
            best = e
    return best


def _mount(source: str | None, target: str, flags: int) -> None:
    src = source.encode() if source is not None else None
    if _libc.mount(src, target.encode(), None, ctypes.c_ulong(flags), None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or ''} on {target}: {os.strerror(err)}")


def unmount_under(roots: Iterable[str]) -> list[str]:
    """Lazily unmount every mount at or below ``roots`` (deepest and topmost first,
    dead FUSE mounts included, like ``fusermount3 -uz`` / ``umount -l``); returns the
    mount points taken down."""
    roots = [os.path.normpath(str(r)) for r in roots]
    done: list[str] = []
    for _ in range(UNMOUNT_PASSES):
        entries = [(i, e) for i, e in enumerate(read_mountinfo())
                   if any(within(e.mount_point, r) and r != "/" for r in roots)]
        if not entries:
            break
        entries.sort(key=lambda ie: (ie[1].mount_point.count("/"), ie[0]), reverse=True)
        progress = False
        for _i, e in entries:
            if _libc.umount2(e.mount_point.encode(), MNT_DETACH) == 0:
                done.append(e.mount_point)
                progress = True
            else:
                log.debug("umount -l %s: %s", e.mount_point, os.strerror(ctypes.get_errno()))
        if not progress:
            left = ", ".join(e.mount_point for _i, e in entries)
            log.warning("could not unmount: %s", left)
            break
    return done


class SharedMounts:
    """Bind mounts the agent made shared on the host so that pods can propagate
    mounts through them (recorded in a JSON list, shared by all nodes)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def recorded(self) -> list[str]:
        data = read_json(self.path)
        return [str(p) for p in data] if isinstance(data, list) else []

    def ensure(self, source: str, propagation: str, bind_point: str) -> None:
        """Make the host mount holding ``source`` shared (for RSLAVE a slave one will do),
        by bind-mounting ``bind_point`` (``source`` or a directory above it) onto itself."""
        with self._lock:
            holder = containing_mount(os.path.realpath(source), read_mountinfo())
            if holder is not None and (holder.shared or (propagation == RSLAVE and holder.slave)):
                return
            binds = self.recorded()
            if bind_point not in binds:
                write_json(self.path, binds + [bind_point])
            _mount(bind_point, bind_point, MS_BIND | MS_REC)
            _mount(None, bind_point, MS_SHARED | MS_REC)
            log.info("made %s a shared mount (for %s propagation of %s)", bind_point, propagation, source)

    def release_under(self, root: str) -> None:
        """Unmount everything at or below ``root`` (a pod directory) and forget its binds."""
        with self._lock:
            if any(within(e.mount_point, root) for e in read_mountinfo()):
                unmount_under([root])
            binds = self.recorded()
            kept = [b for b in binds if not within(b, root)]
            if kept != binds:
                write_json(self.path, kept)

    def release_all(self, extra_roots: Iterable[str] = ()) -> list[str]:
        """Unmount every recorded bind and whatever lies below it or below ``extra_roots``."""
        with self._lock:
            done = unmount_under([*self.recorded(), *extra_roots])
            if self.path.exists():
                write_json(self.path, [])
            return done
