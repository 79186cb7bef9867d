"""The program a scheduled-notebook run or a notebook training job runs in its pod.

    python -m kubelab.server_extension.runner --notebook NB --output-root DIR [options]

It executes a snapshot of a notebook with papermill and leaves one run directory
under ``--output-root``, named after the UTC start time (``20250101T020304Z``,
then ``-2``, ``-3``... when that name exists), holding:

* ``<stem>.ipynb``: the executed notebook (papermill saves it after each cell, so
  it is there, with the traceback, when a cell fails);
* ``<stem>.html``: its nbconvert HTML export (also after a failure);
* ``run.json``: the run record (see ``RECORD_KEYS``), written with status
  ``Running`` at the start and replaced atomically at the end.

Cell output streams to stdout (the container log) while the notebook runs. A
failure ends with one line on stderr, e.g. ``kubelab: cell 3 failed:
ZeroDivisionError: division by zero``, also written to the Kubernetes
termination-message file, and exit status 1 (2 for a usage error: notebook
missing or unreadable, bad ``--parameters-json``, missing ``--cwd``).

The server imports this module to read run records (``read_run_record``,
``find_runs``, ``run_dir_for``), so it imports only the standard library at module
level; papermill and nbconvert are imported when a run executes.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import time

RECORD_NAME = "run.json"
RECORD_KEYS = (
    "run_id", "name", "kind", "status", "started", "finished", "duration_seconds",
    "notebook", "output_notebook", "output_html", "parameters", "error",
    "hostname", "attempt", "kernel", "html_error",
)
RUNNING, SUCCEEDED, FAILED = "Running", "Succeeded", "Failed"
KINDS = ("schedule", "job")
NOTIFY_CHOICES = ("success", "failure")
TRACEBACK_TAIL_LINES = 20
WEBHOOK_TIMEOUT = 10
TERMINATION_LOG = "/dev/termination-log"
TERMINATION_MESSAGE_MAX = 4096  # what the kubelet keeps of the termination message

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TERMINATED = 0, 1, 2, 143

_STAMP = "%Y%m%dT%H%M%SZ"
_RUN_DIR = re.compile(r"^(\d{8}T\d{6}Z)(?:-(\d+))?$")
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")

log = logging.getLogger("papermill")


# --- run records (what the server reads) ----------------------------------------------


def read_run_record(run_dir: str) -> dict | None:
    """The ``run.json`` of ``run_dir``, every key of ``RECORD_KEYS`` present.

    None when the file is missing, unreadable, not JSON or not a JSON object.
    """
    try:
        with open(os.path.join(run_dir, RECORD_NAME), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    for key in RECORD_KEYS:
        record.setdefault(key, None)
    return record


def _newest_first_key(record: dict) -> tuple:
    base = os.path.basename(record["dir"])
    m = _RUN_DIR.match(base)
    started = record.get("started") if isinstance(record.get("started"), str) else ""
    digits = re.sub(r"\D", "", started)[:14] or (re.sub(r"\D", "", m.group(1)) if m else "")
    suffix = int(m.group(2)) if m and m.group(2) else 1
    return digits, suffix, record["dir"]


def find_runs(output_root: str) -> list[dict]:
    """Every run record under ``output_root`` (at any depth), newest first.

    Each is ``read_run_record``'s dict plus ``"dir"``, the run directory's absolute
    path. A missing ``output_root`` has no runs.
    """
    runs = []
    root = os.path.abspath(os.path.expanduser(output_root))
    for dirpath, dirnames, filenames in os.walk(root):
        if RECORD_NAME in filenames:
            dirnames[:] = []  # a run directory holds no runs
            record = read_run_record(dirpath)
            if record is not None:
                record["dir"] = dirpath
                runs.append(record)
    runs.sort(key=_newest_first_key, reverse=True)
    return runs


def run_dir_for(output_root: str, run_id: str) -> str | None:
    """The directory of run ``run_id`` under ``output_root`` (its latest attempt), or None."""
    for record in find_runs(output_root):
        if record.get("run_id") == run_id:
            return record["dir"]
    return None


# --- helpers ---------------------------------------------------------------------------------


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _iso(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _home() -> str:
    return os.path.abspath(os.environ.get("HOME") or os.path.expanduser("~"))


def _display_path(path: str | None) -> str | None:
    """``path`` relative to $HOME when it is under it, else absolute."""
    if path is None:
        return None
    path = os.path.abspath(path)
    home = _home()
    if home != os.sep and path.startswith(home.rstrip(os.sep) + os.sep):
        return os.path.relpath(path, home)
    return path


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _tail(lines, n: int = TRACEBACK_TAIL_LINES) -> str | None:
    text = strip_ansi("\n".join(lines or [])).rstrip()
    if not text:
        return None
    return "\n".join(text.splitlines()[-n:])


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(strip_ansi(str(text)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(text: str) -> str:
    for line in strip_ansi(str(text)).splitlines():
        if line.strip():
            return line.strip()
    return ""


def _error(ename: str, evalue: str, cell: int | None = None, traceback_tail: str | None = None,
           execution_count: int | None = None) -> dict:
    """run.json's ``error``: ``cell`` indexes the cells of the executed notebook file."""
    return {"cell": cell, "ename": ename, "evalue": evalue, "traceback_tail": traceback_tail,
            "execution_count": execution_count}


def _failure_line(run_id: str, error: dict) -> str:
    """The one line a failure prints on stderr and leaves as the termination message."""
    where = f"cell {error['cell']}" if error.get("cell") is not None else f"run {run_id}"
    line = f"kubelab: {where} failed: {error['ename']}"
    if error.get("evalue"):
        line += f": {_one_line(_first_line(error['evalue']))}"
    return line


def _write_json_atomic(path: str, data: dict) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _generate_run_id(started: _dt.datetime) -> str:
    return f"run-{started.strftime(_STAMP).lower()}-{secrets.token_hex(3)}"


def _count_attempts(output_root: str, run_id: str) -> int:
    """How many run directories directly under ``output_root`` belong to ``run_id``."""
    try:
        names = os.listdir(output_root)
    except OSError:
        return 0
    count = 0
    for name in names:
        record = read_run_record(os.path.join(output_root, name))
        if record is not None and record.get("run_id") == run_id:
            count += 1
    return count


def _make_run_dir(output_root: str, started: _dt.datetime) -> str:
    os.makedirs(output_root, exist_ok=True)
    base = started.strftime(_STAMP)
    n = 1
    while True:
        path = os.path.join(output_root, base if n == 1 else f"{base}-{n}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            n += 1


def _write_termination_message(line: str) -> None:
    """Kubernetes shows this file's content as the container's termination message."""
    path = os.environ.get("KUBELAB_TERMINATION_LOG")
    if not path:
        path = TERMINATION_LOG
        if not os.path.exists(path):  # not in a pod: never create files in /dev
            return
    try:
        data = (line + "\n").encode("utf-8")[:TERMINATION_MESSAGE_MAX]
        with open(path, "wb") as f:
            f.write(data)
    except OSError:
        pass


def _notify_type(value: str) -> frozenset:
    events = set()
    for part in value.split(","):
        part = part.strip().lower()
        if part in NOTIFY_CHOICES:
            events.add(part)
        elif part in ("always", "all"):
            events.update(NOTIFY_CHOICES)
        elif part in ("never", "none", ""):
            pass
        else:
            raise argparse.ArgumentTypeError(
                f"unknown --notify event {part!r}: use a comma-separated list of success, failure "
                "(or always, never)")
    return frozenset(events)


def _post_webhook(url: str, record: dict) -> None:
    """POST the run to ``url``; a failure is one warning line and nothing else."""
    import urllib.error
    import urllib.parse
    import urllib.request

    parsed = urllib.parse.urlsplit(url)
    where = f"{parsed.scheme}://{parsed.hostname or ''}"  # no path or query: they may hold a token
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        print(f"kubelab: warning: webhook not called: {url!r} is not an http(s) URL",
              file=sys.stderr, flush=True)
        return
    event = "run.succeeded" if record.get("status") == SUCCEEDED else "run.failed"
    body = json.dumps({"event": event, "run": record}, default=str).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "kubelab-runner"})
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
            response.read(65536)
    except urllib.error.HTTPError as e:
        reason = f"HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        reason = _one_line(e.reason, 200)
    except Exception as e:  # noqa: BLE001 - timeouts, resets: a warning, never a failed run
        reason = _one_line(f"{type(e).__name__}: {e}", 200)
    else:
        print(f"kubelab: webhook {where} notified ({event})", flush=True)
        return
    print(f"kubelab: warning: webhook {where} failed: {reason}", file=sys.stderr, flush=True)


class _Terminated(BaseException):
    """SIGTERM (Job deleted, deadline reached) while the notebook was executing."""


class _OneLineFormatter(logging.Formatter):
    def format(self, record):
        return record.getMessage().rstrip("\n")


def _setup_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_OneLineFormatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


# --- notebook execution ---------------------------------------------------------------------


def _load_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _error_cell_index(nb: dict | None) -> int | None:
    """Index of the cell with the first error output (papermill's rule) in ``nb``."""
    if not nb:
        return None
    for index, cell in enumerate(nb.get("cells") or []):
        for output in cell.get("outputs") or []:
            if output.get("output_type") == "error":
                if output.get("ename") == "SystemExit" and output.get("evalue") in ("", "0"):
                    continue
                return index
    return None


def _last_started_cell_index(nb: dict | None) -> int | None:
    """Index of the last cell papermill started: the one running when execution stopped."""
    if not nb:
        return None
    last = None
    for index, cell in enumerate(nb.get("cells") or []):
        if ((cell.get("metadata") or {}).get("papermill") or {}).get("start_time"):
            last = index
    return last


def _notebook_kernel(path: str) -> str | None:
    nb = _load_json(path)
    spec = ((nb or {}).get("metadata") or {}).get("kernelspec") or {}
    name = spec.get("name")
    return name if isinstance(name, str) and name else None


def _export_html(notebook_path: str, html_path: str) -> None:
    import nbconvert
    import nbformat

    nb = nbformat.read(notebook_path, as_version=4)
    body, _resources = nbconvert.HTMLExporter().from_notebook_node(nb)
    tmp = html_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(body)
    os.replace(tmp, html_path)


class _Run:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.t0 = time.monotonic()
        self.started = _utcnow()
        self.run_id = os.environ.get("KUBELAB_RUN_ID") or _generate_run_id(self.started)
        self.output_root = os.path.abspath(os.path.expanduser(args.output_root))
        self.notebook = os.path.abspath(os.path.expanduser(args.notebook))
        stem = os.path.splitext(os.path.basename(self.notebook))[0] or "notebook"
        self.attempt = _count_attempts(self.output_root, self.run_id) + 1
        self.dir = _make_run_dir(self.output_root, self.started)
        self.output_notebook = os.path.join(self.dir, stem + ".ipynb")
        self.output_html = os.path.join(self.dir, stem + ".html")
        self.record = {
            "run_id": self.run_id,
            "name": args.name,
            "kind": args.kind,
            "status": RUNNING,
            "started": _iso(self.started),
            "finished": None,
            "duration_seconds": None,
            "notebook": _display_path(self.notebook),
            "output_notebook": _display_path(self.output_notebook),
            "output_html": _display_path(self.output_html),
            "parameters": None,
            "error": None,
            "hostname": socket.gethostname(),
            "attempt": self.attempt,
            "kernel": args.kernel,
            "html_error": None,
        }
        self.save()

    @property
    def duration(self) -> float:
        return time.monotonic() - self.t0

    def save(self) -> None:
        _write_json_atomic(os.path.join(self.dir, RECORD_NAME), self.record)

    def finish(self, error: dict | None, line: str | None, code: int) -> int:
        self.record["status"] = FAILED if error else SUCCEEDED
        self.record["error"] = error
        self.record["finished"] = _iso(_utcnow())
        self.record["duration_seconds"] = round(self.duration, 3)
        for key, path in (("output_notebook", self.output_notebook), ("output_html", self.output_html)):
            if not os.path.isfile(path):
                self.record[key] = None
        self.save()
        if error:
            print(line, file=sys.stderr, flush=True)
            _write_termination_message(line)
        else:
            print(f"kubelab: run {self.run_id} succeeded in {self.duration:.1f}s; "
                  f"output {self.output_notebook}", flush=True)
        if self.args.webhook and ("failure" if error else "success") in self.args.notify:
            _post_webhook(self.args.webhook, self.record)
        return code

    def fail(self, error: dict, code: int) -> int:
        return self.finish(error, _failure_line(self.run_id, error), code)

    # --- the steps

    def check_inputs(self) -> int | None:
        """Exit status for a usage error (after recording it), None when the inputs are fine."""
        args = self.args
        parameters = {}
        if args.parameters_json is not None:
            try:
                parameters = json.loads(args.parameters_json)
            except ValueError as e:
                return self.fail(_error("ValueError", f"--parameters-json is not valid JSON: {e}"),
                                 EXIT_USAGE)
            if not isinstance(parameters, dict):
                return self.fail(_error("ValueError", "--parameters-json must be a JSON object, got "
                                        f"{type(parameters).__name__}"), EXIT_USAGE)
        self.parameters = parameters
        self.record["parameters"] = parameters
        if not os.path.isfile(self.notebook):
            return self.fail(_error("FileNotFoundError", f"notebook {self.notebook} does not exist"),
                             EXIT_USAGE)
        nb = _load_json(self.notebook)
        if nb is None or not isinstance(nb.get("cells"), list):
            return self.fail(_error("ValueError", f"notebook {self.notebook} is not a readable .ipynb file"),
                             EXIT_USAGE)
        self.cwd = os.path.abspath(os.path.expanduser(args.cwd)) if args.cwd else _home()
        if not os.path.isdir(self.cwd):
            return self.fail(_error("FileNotFoundError", f"working directory {self.cwd} does not exist"),
                             EXIT_USAGE)
        self.kernel = args.kernel or _notebook_kernel(self.notebook) or "python3"
        self.record["kernel"] = self.kernel
        self.save()
        return None

    def execute(self) -> dict | None:
        """Run the notebook; the error dict (and one-line message) on failure, None on success."""
        try:
            import papermill
            from papermill.exceptions import PapermillExecutionError
        except ImportError as e:
            return _error("ImportError", f"papermill is not installed: {e}")
        print(f"kubelab: running {self.notebook} (run {self.run_id}) with parameters "
              f"{json.dumps(self.parameters, default=str)}", flush=True)
        try:
            papermill.execute_notebook(
                self.notebook, self.output_notebook,
                parameters=self.parameters, kernel_name=self.kernel, cwd=self.cwd,
                log_output=True, progress_bar=False,
                execution_timeout=self.args.cell_timeout,
            )
        except PapermillExecutionError as e:
            cell = _error_cell_index(_load_json(self.output_notebook))
            return _error(e.ename, e.evalue, cell=e.cell_index if cell is None else cell,
                          traceback_tail=_tail(e.traceback), execution_count=e.exec_count)
        except _Terminated:
            return _error("Terminated", "the runner received SIGTERM (Job deleted or past its deadline)",
                          cell=_last_started_cell_index(_load_json(self.output_notebook)))
        except Exception as e:  # noqa: BLE001 - any failure becomes one line and a Failed record
            cell = _last_started_cell_index(_load_json(self.output_notebook))
            return _error(type(e).__name__, strip_ansi(str(e)).strip(), cell=cell)
        return None

    def export_html(self) -> None:
        if not os.path.isfile(self.output_notebook):
            return
        try:
            _export_html(self.output_notebook, self.output_html)
        except Exception as e:  # noqa: BLE001 - recorded; the run's status does not depend on it
            self.record["html_error"] = _one_line(f"{type(e).__name__}: {e}")
            print(f"kubelab: warning: HTML export failed: {self.record['html_error']}",
                  file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kubelab.server_extension.runner",
        description="Execute a notebook with papermill into a new run directory (kubelab "
                    "scheduled runs and notebook jobs).")
    p.add_argument("--notebook", required=True, help="the notebook (snapshot) to execute")
    p.add_argument("--output-root", required=True,
                   help="a new run directory (UTC start time) is created under it")
    p.add_argument("--parameters-json", help="JSON object of parameters papermill injects")
    p.add_argument("--kernel", help="kernel name (default: the notebook's, else python3)")
    p.add_argument("--cwd", help="the kernel's working directory (default: $HOME)")
    p.add_argument("--name", help="schedule or job name, recorded in run.json")
    p.add_argument("--kind", choices=KINDS, help="recorded in run.json")
    p.add_argument("--webhook", help="URL to POST the run record to when it ends")
    p.add_argument("--notify", type=_notify_type, default=frozenset({"failure"}),
                   help="when to call the webhook: success, failure, or both comma-separated "
                        "(default: failure)")
    p.add_argument("--cell-timeout", type=float, help="seconds a cell may run (default: no limit)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cell_timeout is not None and args.cell_timeout <= 0:
        args.cell_timeout = None
    _setup_output()
    try:
        run = _Run(args)
    except OSError as e:
        line = (f"kubelab: run failed: cannot write a run directory under {args.output_root}: "
                f"{_one_line(e.strerror or e)}")
        print(line, file=sys.stderr, flush=True)
        _write_termination_message(line)
        return EXIT_FAILED

    code = run.check_inputs()
    if code is not None:
        return code

    state = {"executing": True, "terminated": False}

    def on_sigterm(signum, frame):
        state["terminated"] = True
        if state["executing"]:
            state["executing"] = False
            raise _Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        try:
            error = run.execute()
        except _Terminated:
            error = None
        finally:
            state["executing"] = False
        run.export_html()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if state["terminated"]:
        if error is None or error["ename"] != "Terminated":
            error = _error("Terminated", "the runner received SIGTERM (Job deleted or past its deadline)",
                           cell=error["cell"] if error else None)
        return run.fail(error, EXIT_TERMINATED)
    if error is None:
        return run.finish(None, None, EXIT_OK)
    return run.fail(error, EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
