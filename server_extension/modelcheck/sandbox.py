"""Load a model in a throw-away, locked-down child process.

Parent side: :func:`run` starts::

    python -I -B -m kubelab.server_extension.modelcheck.sandbox FORMAT MODEL_DIR --writable TMP ...

- environment: only PATH=/usr/bin:/bin, HOME and TMPDIR in a fresh temp dir,
  LANG, and thread-count variables (no AWS_*, KUBELAB_*, JUPYTERHUB_*,
  tokens, proxies, PYTHON*: nothing of the parent's environment is passed;
  ``-I`` also ignores PYTHON* variables and the user's site-packages);
- cwd: the fresh temp dir; stdin: /dev/null; stdout/stderr: files in the
  temp dir (so a chatty or hostile child cannot fill the parent's memory);
- resource limits set in ``preexec_fn`` before the interpreter starts:
  RLIMIT_AS (``memory_mb``), RLIMIT_CPU (``timeout`` + 1 s), RLIMIT_NOFILE
  (256), RLIMIT_FSIZE (64 MiB), RLIMIT_CORE (0);
- a new session (process group): on the wall-clock ``timeout`` the whole
  group is killed with SIGKILL, and it is killed after a normal exit too
  (nothing the child started outlives it unless it left the group);
- the temp dir is deleted afterwards.

Child side (:func:`main`), before it reads a byte of the model (the child
is a fresh, single-threaded process, so this needs no preexec tricks):

- OOM: ``oom_score_adj`` 1000, so that a pod that runs out of memory loses
  the child rather than the user's server;
- network: a new network namespace (no interfaces but a down loopback) with
  ``unshare(CLONE_NEWNET)`` when running as root, else
  ``unshare(CLONE_NEWUSER|CLONE_NEWNET)`` with the caller's uid/gid mapped
  to itself. Best-effort: container runtimes' default seccomp profiles
  usually refuse unprivileged user namespaces, and then the child keeps the
  pod's network (``isolation.skipped`` says so);
- Landlock (Linux >= 5.13, best-effort likewise): no file may be created,
  written, truncated, renamed or removed outside the temp dir, no program
  may be executed, no TCP connect/bind (ABI >= 4), no signals to and no
  abstract-socket connections with processes outside the sandbox (ABI >= 6);
  reading stays allowed everywhere (the interpreter and the model must be
  read);
- then it loads the model with ``loaders.load``, runs one prediction on
  zeros built from the signature (-1 dimensions -> 1), and writes ONE JSON
  line to its stdout: ``{"ok", "format", "framework_versions", "signature",
  "prediction_ok", "error", ...}``. Anything the libraries print goes to
  stderr.

What this does NOT protect against: a load-time exploit can still read any
file the user can read (the server's mounted S3 credentials included: they
are the user's own, scoped to their prefix) and report it in its output; without Landlock it can
write the user's files and signal (kill) the user's other processes, and
without a network namespace it can reach the network; it can use up to the
limits above of CPU and memory; it runs as the same user, so it shares the
kernel attack surface (no seccomp filter). That is why pickles are scanned
statically first and never loaded when a global is outside the allowlist:
the sandbox is the second line, not the first.
"""
from __future__ import annotations

import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

MODULE = "kubelab.server_extension.modelcheck.sandbox"

DEFAULT_NOFILE = 256
DEFAULT_FSIZE_MB = 64
_MAX_OUTPUT = 1 << 20

# selftest probes (not model formats: validate() never passes these)
SELFTESTS = ("selftest:hang", "selftest:memory", "selftest:env", "selftest:net",
             "selftest:write", "selftest:exec", "selftest:signal", "selftest:orphan", "selftest:ok")


@dataclass
class SandboxResult:
    ok: bool                       # loaded (the child said so)
    report: dict                   # the child's JSON line ({} when there was none)
    error: str | None              # one line, when not ok
    timed_out: bool = False
    returncode: int | None = None
    elapsed: float = 0.0
    stderr_tail: str = ""
    isolation: dict = field(default_factory=dict)


def clean_env(home: str, tmpdir: str) -> dict[str, str]:
    """The child's whole environment (nothing is inherited)."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": tmpdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # one thread each: predictable memory (per-thread arenas and BLAS
        # buffers count against RLIMIT_AS) and CPU time
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
    }


def _limits(memory_mb: int, cpu_s: int, nofile: int, fsize: int):
    """The preexec_fn: computed here, in the parent, so that the child only
    calls setrlimit between fork and exec."""
    wanted = [
        (resource.RLIMIT_AS, memory_mb * 1024 * 1024),
        (resource.RLIMIT_CPU, cpu_s),
        (resource.RLIMIT_NOFILE, nofile),
        (resource.RLIMIT_FSIZE, fsize),
        (resource.RLIMIT_CORE, 0),
    ]
    plan = []
    for res, value in wanted:
        soft, hard = resource.getrlimit(res)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        new_hard = value
        if res == resource.RLIMIT_CPU:  # SIGXCPU at the soft limit, SIGKILL 1 s later
            new_hard = value + 1 if hard == resource.RLIM_INFINITY else min(value + 1, hard)
        plan.append((res, (value, new_hard)))
    setrlimit = resource.setrlimit

    def apply():
        for res, limits in plan:
            setrlimit(res, limits)

    return apply


def run(fmt: str, model_dir: str, *, timeout: float = 60, memory_mb: int = 2048,
        network_isolation: bool = True, landlock: bool = True,
        extra_args: list[str] | None = None) -> SandboxResult:
    """Load ``model_dir`` as ``fmt`` in the sandbox and return what happened."""
    model_dir = os.path.abspath(model_dir)
    root = tempfile.mkdtemp(prefix="kubelab-modelcheck-")
    try:
        os.chmod(root, 0o700)
        box = os.path.join(root, "box")
        home, tmp, work = (os.path.join(box, d) for d in ("home", "tmp", "work"))
        for d in (home, tmp, work):
            os.makedirs(d, mode=0o700)
        cmd = [sys.executable, "-I", "-B", "-m", MODULE, fmt, model_dir,
               "--writable", box, "--memory-mb", str(memory_mb)]
        if not network_isolation:
            cmd.append("--no-netns")
        if not landlock:
            cmd.append("--no-landlock")
        cmd += extra_args or []
        cpu = max(1, math.ceil(timeout)) + 1
        preexec = _limits(memory_mb, cpu, DEFAULT_NOFILE, DEFAULT_FSIZE_MB * 1024 * 1024)
        out_path, err_path = os.path.join(root, "stdout"), os.path.join(root, "stderr")
        started = time.monotonic()
        timed_out = False
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        cwd=work, env=clean_env(home, tmp), close_fds=True,
                                        start_new_session=True, preexec_fn=preexec)
            except (OSError, subprocess.SubprocessError) as e:
                return SandboxResult(False, {}, f"the sandbox could not start: {e}")
            try:
                timed_out = not _wait_unreaped(proc.pid, timeout)
            finally:
                # the group's leader is not reaped yet, so its pid (the group
                # id) cannot have been reused: kill what is left, then reap
                _kill_group(proc.pid)
                proc.wait()
        elapsed = time.monotonic() - started
        report = _report(_tail(out_path, _MAX_OUTPUT))
        stderr_tail = _tail(err_path, 4000).decode("utf-8", "replace")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rc = proc.returncode
    isolation = {
        "rlimits": {"as_mb": memory_mb, "cpu_s": cpu, "nofile": DEFAULT_NOFILE,
                    "fsize_mb": DEFAULT_FSIZE_MB, "core": 0},
        "clean_env": True,
        "timeout_s": timeout,
    }
    isolation.update(report.get("isolation") or {})
    if timed_out:
        return SandboxResult(False, report, f"timed out after {timeout:g}s", True, rc, elapsed,
                             stderr_tail, isolation)
    if report and report.get("ok"):
        return SandboxResult(True, report, None, False, rc, elapsed, stderr_tail, isolation)
    if report and report.get("error"):
        return SandboxResult(False, report, str(report["error"]), False, rc, elapsed, stderr_tail, isolation)
    return SandboxResult(False, report, _crash_reason(rc, stderr_tail, memory_mb, timeout), False, rc,
                         elapsed, stderr_tail, isolation)


def _wait_unreaped(pid: int, timeout: float) -> bool:
    """Wait for the child to exit without reaping it; False on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read()
    except OSError:
        return b""


def _report(out: bytes) -> dict:
    for line in reversed(out.splitlines()):
        line = line.strip()
        if line.startswith(b"{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict) and "ok" in value:
                return value
    return {}


def _crash_reason(rc: int | None, stderr: str, memory_mb: int, timeout: float) -> str:
    last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "")
    memoryish = any(s in stderr for s in ("MemoryError", "bad_alloc", "Cannot allocate memory",
                                          "out of memory", "std::bad_alloc"))
    if rc is not None and rc < 0:
        sig = -rc
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        if sig == signal.SIGXCPU:
            return f"used more than {timeout:g}s of CPU time"
        if sig == signal.SIGXFSZ:
            return f"wrote a file larger than {DEFAULT_FSIZE_MB} MiB"
        if memoryish or sig == signal.SIGKILL:
            return f"ran out of memory (limit {memory_mb} MiB; killed by {name})"
        return f"crashed ({name})" + (f": {last[:300]}" if last else "")
    if memoryish:
        return f"ran out of memory (limit {memory_mb} MiB)"
    return f"exited with status {rc} without a result" + (f": {last[:300]}" if last else "")


# -- the child ---------------------------------------------------------------------

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_PR_SET_NO_NEW_PRIVS = 38

# Landlock (include/uapi/linux/landlock.h); the syscall numbers are the same
# on every architecture that has them (x86_64, aarch64, riscv64, ...)
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LL_EXECUTE = 1 << 0
_LL_WRITE_FILE = 1 << 1
_LL_READ_FILE = 1 << 2
_LL_READ_DIR = 1 << 3
_LL_WRITES_V1 = (1 << 1) | sum(1 << i for i in range(4, 13))  # write, remove, make_*
_LL_REFER = 1 << 13       # ABI 2
_LL_TRUNCATE = 1 << 14    # ABI 3
_LL_IOCTL_DEV = 1 << 15   # ABI 5
_LL_NET_BIND_TCP = 1 << 0  # ABI 4
_LL_NET_CONNECT_TCP = 1 << 1
_LL_SCOPE_ABSTRACT_UNIX = 1 << 0  # ABI 6
_LL_SCOPE_SIGNAL = 1 << 1


def _libc():
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _unshare_net() -> str | None:
    """Enter a new network namespace; None on success, else why not."""
    ctypes, libc = _libc()
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        if libc.unshare(_CLONE_NEWNET) != 0:
            return f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}"
        return None
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        return f"unshare(CLONE_NEWUSER|CLONE_NEWNET): {os.strerror(ctypes.get_errno())}"
    try:
        for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"{uid} {uid} 1"),
                           ("/proc/self/gid_map", f"{gid} {gid} 1")):
            with open(path, "w") as f:
                f.write(text)
    except OSError as e:
        return f"user namespace id maps: {e.strerror}"
    return None


def _landlock(writable: str) -> tuple[list[str], str | None]:
    """Restrict this process (and its children) with Landlock. Returns the
    layers applied and, when it could not, why."""
    ctypes, libc = _libc()
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 0:
        return [], f"landlock unavailable: {os.strerror(ctypes.get_errno())}"
    fs = _LL_EXECUTE | _LL_WRITES_V1
    if abi >= 2:
        fs |= _LL_REFER
    if abi >= 3:
        fs |= _LL_TRUNCATE
    if abi >= 5:
        fs |= _LL_IOCTL_DEV
    net = (_LL_NET_BIND_TCP | _LL_NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (_LL_SCOPE_ABSTRACT_UNIX | _LL_SCOPE_SIGNAL) if abi >= 6 else 0

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                    ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    attr = RulesetAttr(fs, net, scoped)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    ruleset = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        return [], f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}"
    try:
        file_rights = _LL_WRITE_FILE | (_LL_TRUNCATE if abi >= 3 else 0)
        rules = [(writable, fs & ~_LL_EXECUTE)]
        rules += [(p, file_rights) for p in ("/dev/null",) if os.path.exists(p)]
        for path, rights in rules:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = PathBeneath(rights, fd)
                if libc.syscall(_SYS_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(1),
                                ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    return [], f"landlock_add_rule({path}): {os.strerror(ctypes.get_errno())}"
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return [], f"prctl(NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}"
        if libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return [], f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}"
    finally:
        os.close(ruleset)
    applied = [f"landlock-fs (abi {abi}): writes only under the sandbox dir, no exec"]
    if net:
        applied.append("landlock-net: no TCP connect/bind")
    if scoped:
        applied.append("landlock-scope: no signals or abstract sockets outside the sandbox")
    return applied, None


def isolate(writable: str, *, netns: bool = True, landlock: bool = True) -> dict:
    applied, skipped = [], {}
    # if the pod's memory cgroup runs out, the kernel should kill this child,
    # not the user's Jupyter server (first: Landlock would forbid the write)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
        applied.append("oom_score_adj=1000")
    except OSError as e:
        skipped["oom_score_adj"] = e.strerror or str(e)
    if netns:
        why = _unshare_net()
        if why is None:
            applied.append("netns: no network")
        else:
            skipped["netns"] = why
    if landlock:
        layers, why = _landlock(writable)
        applied += layers
        if why:
            skipped["landlock"] = why
    return {"applied": applied, "skipped": skipped}


_NUMPY_DTYPES = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32",
                 "UINT64": "uint64", "INT8": "int8", "INT16": "int16", "INT32": "int32",
                 "INT64": "int64", "FP16": "float16", "FP32": "float32", "FP64": "float64"}


def dummy_inputs(signature: dict | None) -> dict | None:
    """Zeros of each input's shape (-1 or unknown dimensions -> 1), or None
    when the signature does not allow it (no inputs, BYTES, unknown types)."""
    import numpy as np

    if not signature or not signature.get("inputs"):
        return None
    feeds = {}
    for spec in signature["inputs"]:
        dtype = _NUMPY_DTYPES.get(str(spec.get("datatype", "")).upper())
        if dtype is None:
            return None
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in (spec.get("shape") or [])]
        feeds[spec["name"]] = np.zeros(shape, dtype=dtype)
    return feeds


def _signature_dict(sig) -> dict | None:
    if sig is None:
        return None
    if hasattr(sig, "to_dict"):
        return sig.to_dict()
    import dataclasses

    if dataclasses.is_dataclass(sig):
        return dataclasses.asdict(sig)
    return dict(sig)


def _one_line(e: BaseException) -> str:
    text = " ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())
    text = text or type(e).__name__
    return text[:400]


def _selftest(kind: str, model_dir: str, writable: str) -> dict:
    """Probes of the sandbox itself, for tests and for operators checking a node."""
    if kind == "selftest:hang":
        while True:
            pass
    if kind == "selftest:memory":
        hog = []
        while True:
            hog.append(bytearray(64 * 1024 * 1024))
    if kind == "selftest:env":
        return {"env": dict(os.environ), "cwd": os.getcwd()}
    if kind == "selftest:net":
        import socket

        results = {}
        for host, port in (("1.1.1.1", 53), ("127.0.0.1", 1)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(2)
            try:
                s.connect((host, port))
                results[f"{host}:{port}"] = "connected"
            except OSError as e:
                results[f"{host}:{port}"] = e.strerror or type(e).__name__
            finally:
                s.close()
        return {"net": results}
    if kind == "selftest:write":
        results = {}
        for path in (os.path.join(model_dir, "sandbox-write-probe"),
                     os.path.join(writable, "tmp", "probe")):
            try:
                with open(path, "w") as f:
                    f.write("x")
                results[path] = "written"
            except OSError as e:
                results[path] = e.strerror or type(e).__name__
        return {"write": results}
    if kind == "selftest:exec":
        try:
            r = subprocess.run(["/bin/true"], capture_output=True)
            return {"exec": f"ran (status {r.returncode})"}
        except OSError as e:
            return {"exec": e.strerror or type(e).__name__}
    if kind == "selftest:orphan":
        pid = os.fork()
        if pid == 0:  # left behind in the process group when the child exits
            time.sleep(3600)
            os._exit(0)
        return {"orphan": pid}
    if kind == "selftest:signal":
        try:
            os.kill(os.getppid(), 0)
            return {"signal": "allowed"}
        except OSError as e:
            return {"signal": e.strerror or type(e).__name__}
    return {}


def _load(fmt: str, model_dir: str, memory_mb: int) -> dict:
    report: dict = {"ok": False, "format": fmt, "framework_versions": {}, "signature": None,
                    "prediction_ok": None, "error": None}
    try:
        from kubelab.server_extension.serving import loaders
    except Exception as e:  # noqa: BLE001 - reported, not raised
        report["error"] = f"the serving runtime cannot be imported here: {_one_line(e)}"
        return report
    started = time.monotonic()
    try:
        model = loaders.load(fmt, model_dir)
    except loaders.LoadError as e:
        report["error"] = str(e).splitlines()[0] if str(e) else "LoadError"
        return report
    except MemoryError:
        report["error"] = f"ran out of memory while loading (limit {memory_mb} MiB)"
        return report
    except Exception as e:  # noqa: BLE001 - any framework error is a load failure
        report["error"] = f"{fmt}: {type(e).__name__}: {_one_line(e)}"
        return report
    report["load_seconds"] = round(time.monotonic() - started, 3)
    report["ok"] = True
    report["framework_versions"] = dict(getattr(model, "framework_versions", {}) or {})
    report["signature"] = _signature_dict(getattr(model, "signature", None))
    report["warnings"] = [str(w) for w in getattr(model, "warnings", []) or []]
    report["file"] = os.path.basename(getattr(model, "path", "") or "")
    if getattr(model, "servable", True) is False:
        report["prediction_error"] = "not servable (weights only): no test prediction"
        return report
    feeds = dummy_inputs(report["signature"])
    if feeds is None:
        report["prediction_error"] = "no test prediction: the signature gives no numeric input shapes"
        return report
    try:
        outputs = model.predict(feeds)
        report["prediction_ok"] = True
        report["outputs"] = {k: {"shape": list(getattr(v, "shape", ())), "dtype": str(getattr(v, "dtype", ""))}
                             for k, v in (outputs or {}).items()}
    except MemoryError:
        report["prediction_ok"] = False
        report["prediction_error"] = f"ran out of memory predicting (limit {memory_mb} MiB)"
    except Exception as e:  # noqa: BLE001
        report["prediction_ok"] = False
        report["prediction_error"] = _one_line(e)
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}",
                                     description="Load a model in the sandbox (run by modelcheck.sandbox.run).")
    parser.add_argument("format")
    parser.add_argument("model_dir")
    parser.add_argument("--writable", required=True, help="the only directory the child may write to")
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--no-netns", action="store_true")
    parser.add_argument("--no-landlock", action="store_true")
    args = parser.parse_args(argv)

    # the real stdout carries the one JSON line; everything else goes to stderr
    out_fd = os.dup(1)
    os.dup2(2, 1)

    isolation = isolate(args.writable, netns=not args.no_netns, landlock=not args.no_landlock)
    if args.format.startswith("selftest:"):
        report = {"ok": True, "format": args.format, "framework_versions": {}, "signature": None,
                  "prediction_ok": None, "error": None}
        report.update(_selftest(args.format, args.model_dir, args.writable))
    else:
        report = _load(args.format, args.model_dir, args.memory_mb)
    report["isolation"] = isolation
    line = json.dumps(report, default=str, separators=(",", ":")) + "\n"
    data = line.encode()
    while data:
        n = os.write(out_fd, data)
        data = data[n:]
    os.close(out_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
