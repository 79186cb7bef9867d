"""Container shim: runs one container process and outlives the agent.

Started by the agent as ``python shim.py SPEC.json`` in a new session; it uses
only the standard library and no package import, so it keeps running whatever
happens to the agent's code. It

1. joins the pod's network namespace and unshares a private mount (and UTS)
   namespace, where it bind-mounts the container's volumes (a volume with
   mount propagation is a clone of the host mount instead, taken with
   open_tree(2) before the unshare so that it stays in the host mount's peer
   group: rslave for HostToContainer, rshared for Bidirectional);
2. starts the command in its own process group, inside the container's
   cgroups, with stdout/stderr piped to it;
3. writes CRI-style log lines (``<RFC3339Nano> stdout F <text>``);
4. forwards SIGTERM to the process group;
5. when the command exits, kills what is left in its cgroups and writes
   ``exit.json`` (exit code, reason, message, finish time).

``run.json`` (pid, start time) is written once the command runs.
"""
from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MNT_DETACH = 0x2
# open_tree(2) / move_mount(2): the same numbers on x86_64 and arm64.
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MAX_LINE = 16 * 1024
DRAIN_SECONDS = 2.0
TERMINATION_MESSAGE_MAX = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_MESSAGE_MAX = 2048

_libc = ctypes.CDLL(None, use_errno=True)


class StartError(Exception):
    """The container could not be started (exit code, message)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def now_rfc3339nano() -> str:
    """Current UTC time like Go's RFC3339Nano (trailing zeros of the fraction dropped)."""
    ns = time.time_ns()
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9))
    frac = f"{ns % 10**9:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def write_json(path: str, data: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise StartError(128, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    src = source.encode() if source is not None else None
    _check(_libc.mount(src, target.encode(), None, ctypes.c_ulong(flags), None), f"mount {source} on {target}")


def enter_namespaces(spec: dict[str, Any]) -> None:
    """Join the pod netns, unshare a private mount namespace (and UTS for the hostname)."""
    if spec.get("netns"):
        fd = os.open(f"/run/netns/{spec['netns']}", os.O_RDONLY)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), f"setns {spec['netns']}")
        finally:
            os.close(fd)
    flags = CLONE_NEWNS | (CLONE_NEWUTS if spec.get("hostname") else 0)
    _check(_libc.unshare(flags), "unshare")
    _mount(None, "/", MS_REC | MS_PRIVATE)
    # Copies of other pods' netns mounts would keep those namespaces alive.
    with open("/proc/self/mountinfo") as f:
        netns_mounts = [line.split()[4] for line in f if line.split()[4].startswith("/run/netns/")]
    for target in sorted(netns_mounts, reverse=True):
        _libc.umount2(target.encode(), MNT_DETACH)
    if spec.get("hostname"):
        name = spec["hostname"].encode()
        _check(_libc.sethostname(name, len(name)), "sethostname")


def clone_trees(mounts: list[dict[str, Any]]) -> dict[int, int]:
    """Detached clones of the sources of propagating mounts (index -> fd), taken in the
    host's mount namespace: a clone of a shared mount joins its peer group."""
    fds: dict[int, int] = {}
    for i, m in enumerate(mounts):
        if m.get("propagation", "private") == "private":
            continue
        fd = _libc.syscall(SYS_OPEN_TREE, AT_FDCWD, m["source"].encode(),
                           OPEN_TREE_CLONE | os.O_CLOEXEC | AT_RECURSIVE)
        if fd < 0:
            err = ctypes.get_errno()
            raise StartError(128, f"open_tree {m['source']}: {os.strerror(err)}")
        fds[i] = fd
    return fds


def bind_mounts(mounts: list[dict[str, Any]], clones: dict[int, int] | None = None) -> None:
    """Bind each source on its target (creating a missing target), read-only where asked;
    a propagating mount attaches its clone and gets its propagation (rslave, rshared)."""
    clones = clones or {}
    for i, m in enumerate(mounts):
        target = m["target"]
        if not os.path.lexists(target):
            if m["is_file"]:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                open(target, "a").close()
            else:
                os.makedirs(target, exist_ok=True)
        if i in clones:
            _check(_libc.syscall(SYS_MOVE_MOUNT, clones[i], b"", AT_FDCWD, target.encode(),
                                 MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {m['source']} to {target}")
            os.close(clones.pop(i))
            flag = MS_SLAVE if m["propagation"] == "rslave" else MS_SHARED
            _mount(None, target, MS_REC | flag)
        else:
            _mount(m["source"], target, MS_BIND | MS_REC)
        if m["read_only"]:
            _mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY)


class LogWriter:
    """Turns a stream's bytes into CRI log lines."""

    def __init__(self, out: Any, stream: str):
        self.out = out
        self.stream = stream.encode()
        self.buf = b""

    def _emit(self, data: bytes, tag: bytes) -> None:
        self.out.write(now_rfc3339nano().encode() + b" " + self.stream + b" " + tag + b" " + data + b"\n")

    def feed(self, data: bytes) -> None:
        self.buf += data
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                break
            line, self.buf = self.buf[:nl], self.buf[nl + 1:]
            while len(line) > MAX_LINE:
                self._emit(line[:MAX_LINE], b"P")
                line = line[MAX_LINE:]
            self._emit(line, b"F")
        while len(self.buf) > MAX_LINE:
            self._emit(self.buf[:MAX_LINE], b"P")
            self.buf = self.buf[MAX_LINE:]

    def close(self) -> None:
        if self.buf:
            self._emit(self.buf, b"F")
            self.buf = b""


def cgroup_pids(dirs: list[str]) -> set[int]:
    pids: set[int] = set()
    for d in dirs:
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                pids |= {int(p) for p in f.read().split()}
        except OSError:
            pass
    return pids


def oom_killed(memory_dir: str | None) -> bool:
    if not memory_dir:
        return False
    try:
        with open(os.path.join(memory_dir, "memory.oom_control")) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) > 0
    except (OSError, ValueError):
        pass
    return False


def _child_setup(cgroup_dirs: list[str], uid: int | None, gid: int | None, groups: list[int]) -> None:
    """In the forked child before exec: join the cgroups, then drop to the container user."""
    pid = str(os.getpid())
    for d in cgroup_dirs:
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(pid)
    if gid is not None:
        os.setgroups(groups)
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)


def start_error_message(argv: list[str], err: OSError, cwd: str) -> StartError:
    """containerd-like wording for a failed exec."""
    exe = argv[0]
    if isinstance(err, FileNotFoundError) and err.filename == cwd:
        return StartError(128, f"chdir to cwd (\"{cwd}\") set in config.json failed: no such file or directory")
    if isinstance(err, FileNotFoundError):
        if "/" in exe:
            return StartError(127, f"exec: \"{exe}\": stat {exe}: no such file or directory: not found")
        return StartError(127, f"exec: \"{exe}\": executable file not found in $PATH")
    if isinstance(err, PermissionError):
        return StartError(126, f"exec: \"{exe}\": permission denied")
    return StartError(128, f"exec: \"{exe}\": {err.strerror or err}")


def _tail(path: str, size: int) -> tuple[bytes, bool]:
    """The last ``size`` bytes of a file, and whether the file was longer."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        length = f.tell()
        f.seek(max(0, length - size))
        return f.read(), length > size


def termination_message(spec: dict[str, Any], code: int) -> str:
    """What the kubelet reports as ``state.terminated.message``: the end of the termination
    log (at most 4096 bytes) or, for FallbackToLogsOnError after a failure with an empty
    one, the last 80 log lines, at most the last 2048 bytes, each full line with its newline."""
    path = spec.get("termination_log")
    message = ""
    if path:
        try:
            message = _tail(path, TERMINATION_MESSAGE_MAX)[0].decode("utf-8", "replace")
        except OSError:
            pass
    if not message and code != 0 and spec.get("fallback_to_logs"):
        try:
            # Enough bytes for 80 full CRI lines; only the tail, whatever the log's size.
            data, cut = _tail(spec["log"], FALLBACK_LOG_LINES * (MAX_LINE + 64))
        except OSError:
            return message
        lines = data.splitlines()
        if cut and lines:
            lines = lines[1:]  # the first line read may be the end of a longer one
        text = b""
        for line in lines[-FALLBACK_LOG_LINES:]:
            parts = line.split(b" ", 3)
            if len(parts) < 3:
                continue
            text += (parts[3] if len(parts) > 3 else b"") + (b"\n" if parts[2] == b"F" else b"")
        message = text[-FALLBACK_MESSAGE_MAX:].decode("utf-8", "replace")
    return message


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the container; return what goes into exit.json."""
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_term(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        if child is not None:
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_term)

    started_at = now_rfc3339nano()
    try:
        clones = clone_trees(spec["mounts"])
        enter_namespaces(spec)
        bind_mounts(spec["mounts"], clones)
        cwd = spec.get("cwd") or "/"
        if not os.path.isdir(cwd):
            os.makedirs(cwd, exist_ok=True)
        if stopping:
            raise StartError(137, "container was stopped before it started")
        cgroups = list(spec.get("cgroups") or [])
        try:
            child = subprocess.Popen(
                spec["argv"], env=spec["env"], cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0,
                preexec_fn=lambda: _child_setup(cgroups, spec.get("uid"), spec.get("gid"),
                                                spec.get("groups") or []))
        except OSError as e:
            raise start_error_message(spec["argv"], e, cwd) from e
        except subprocess.SubprocessError as e:
            raise StartError(128, f"container setup failed (cgroups or user): {e}") from e
    except StartError as e:
        with open(spec["log"], "ab") as log:
            LogWriter(log, "stderr").feed(f"devcluster: {e}\n".encode())
        return {"exitCode": e.code, "reason": "StartError", "message": str(e),
                "startedAt": started_at, "finishedAt": now_rfc3339nano()}
    except OSError as e:
        return {"exitCode": 128, "reason": "StartError", "message": f"container setup failed: {e}",
                "startedAt": started_at, "finishedAt": now_rfc3339nano()}

    started_at = now_rfc3339nano()
    write_json(spec["run_file"], {"pid": child.pid, "shimPid": os.getpid(), "startedAt": started_at})
    if stopping:
        os.killpg(child.pid, signal.SIGTERM)

    assert child.stdout is not None and child.stderr is not None
    sel = selectors.DefaultSelector()
    with open(spec["log"], "ab", buffering=0) as log_file:
        writers = {child.stdout.fileno(): LogWriter(log_file, "stdout"),
                   child.stderr.fileno(): LogWriter(log_file, "stderr")}
        for fd in writers:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        drain_until: float | None = None
        while sel.get_map():
            for key, _ in sel.select(timeout=0.5):
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if data:
                    writers[key.fd].feed(data)
                else:
                    sel.unregister(key.fd)
            if drain_until is None and child.poll() is not None:
                # The main process is gone: so is the container (like a pid namespace).
                for pid in cgroup_pids(cgroups):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                drain_until = time.monotonic() + DRAIN_SECONDS
            if drain_until is not None and time.monotonic() > drain_until:
                break
        for w in writers.values():
            w.close()
    code = child.wait()
    if code < 0:
        code = 128 - code
    memory_dir = next((d for d in cgroups if "/memory/" in d), None)
    if oom_killed(memory_dir):
        reason = "OOMKilled"
    else:
        reason = "Completed" if code == 0 else "Error"
    return {"exitCode": code, "reason": reason, "message": termination_message(spec, code),
            "startedAt": started_at, "finishedAt": now_rfc3339nano()}


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    try:
        result = run(spec)
    except Exception as e:  # never leave the agent without an exit record
        result = {"exitCode": 128, "reason": "StartError", "message": f"shim failed: {e!r}",
                  "finishedAt": now_rfc3339nano()}
    write_json(spec["exit_file"], result)


if __name__ == "__main__":
    main()
