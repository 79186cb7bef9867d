"""kubelab.server_extension.runner, run as a Job pod runs it: a subprocess with its own $HOME.

Real papermill and a real ipykernel (the test interpreter's). No cluster needed.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest

from kubelab.server_extension import runner

RUNNER = [sys.executable, "-m", "kubelab.server_extension.runner"]
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
RUN_DIR = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
RUNNER_FILE = str(Path(runner.__file__).resolve())


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kernel(tmp_path_factory) -> tuple[str, dict]:
    """(kernel name, extra env): the venv's `python3` kernelspec when it runs this interpreter's
    ipykernel, else a kernelspec for this interpreter in a private JUPYTER_PATH."""
    home = tmp_path_factory.mktemp("kernel-home")
    probe = ("import json, sys\n"
             "from jupyter_client.kernelspec import KernelSpecManager\n"
             "try:\n"
             "    print(json.dumps(KernelSpecManager().get_kernel_spec('python3').argv))\n"
             "except Exception:\n"
             "    print('null')\n")
    out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "HOME": str(home)},
                         capture_output=True, text=True, timeout=60)
    argv = json.loads(out.stdout.strip() or "null")
    if argv:
        exe = sys.executable if argv[0] in ("python", "python3", f"python3.{sys.version_info[1]}") else argv[0]
        if subprocess.run([exe, "-c", "import ipykernel"], capture_output=True, timeout=60).returncode == 0:
            return "python3", {}
    from ipykernel.kernelspec import write_kernel_spec

    jupyter_path = tmp_path_factory.mktemp("jupyter-path")
    write_kernel_spec(str(jupyter_path / "kernels" / "kubelab-test-python"),
                      overrides={"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                 "display_name": "kubelab test python"})
    return "kubelab-test-python", {"JUPYTER_PATH": str(jupyter_path)}


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def env(tmp_path, home, kernel) -> dict:
    """The runner's environment: $HOME in tmp, a termination log in tmp, no proxies."""
    e = {k: v for k, v in os.environ.items()
         if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
         and not k.startswith("KUBELAB_")}
    e.update(kernel[1])
    e["HOME"] = str(home)
    e["KUBELAB_TERMINATION_LOG"] = str(tmp_path / "termination-log")
    e["PYTHONDONTWRITEBYTECODE"] = "1"
    return e


def make_notebook(path: Path, kernel_name: str, *cells: str, parameters: str | None = None) -> Path:
    """A notebook of code cells; ``parameters`` becomes a `parameters`-tagged first code cell."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# test notebook"))
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.extend(nbformat.v4.new_code_cell(src) for src in cells)
    nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": kernel_name, "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def param_nb(home, kernel) -> Path:
    return make_notebook(home / "work" / "param.ipynb", kernel[0],
                         "print('alpha is', alpha)",
                         "open('alpha.txt', 'w').write(str(alpha))",
                         parameters="alpha = 1")


@pytest.fixture
def failing_nb(home, kernel) -> Path:
    return make_notebook(home / "work" / "fails.ipynb", kernel[0],
                         "x = 1",
                         "print('before', x)",
                         "x / 0",
                         "print('after')")


def run(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*RUNNER, *args], env=env, capture_output=True, text=True, timeout=timeout)


def kubelab_stderr_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("kubelab:")]


def assert_no_runner_traceback(proc) -> None:
    # The kernel may log on stderr; the runner itself never prints a traceback.
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr
    assert RUNNER_FILE not in proc.stderr, proc.stderr


def only_run_dir(root: Path) -> Path:
    dirs = [p for p in root.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    assert RUN_DIR.match(dirs[0].name), dirs[0].name
    return dirs[0]


def record_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


class Hook:
    """A local webhook receiver: every POST lands in ``posts``."""

    def __init__(self):
        self.posts: list[dict] = []
        self.received = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.posts.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                hook.received.set()
                self.send_response(500 if self.path == "/broken" else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- successful runs ------------------------------------------------------------------------


def test_parameterized_run_succeeds(env, home, param_nb, hook):
    env["KUBELAB_RUN_ID"] = "nbjob-abc12"
    root = home / ".kubelab" / "runs" / "daily"
    t0 = time.monotonic()
    proc = run(env, "--notebook", str(param_nb), "--output-root", str(root),
               "--parameters-json", '{"alpha": 7}', "--name", "daily", "--kind", "schedule",
               "--webhook", f"{hook.url}/hook")  # --notify defaults to failure: no POST
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_no_runner_traceback(proc)
    assert kubelab_stderr_lines(proc) == []

    run_dir = only_run_dir(root)
    assert sorted(p.name for p in run_dir.iterdir()) == ["param.html", "param.ipynb", "run.json"]
    rec = record_of(run_dir)
    assert rec["status"] == "Succeeded"
    assert rec["run_id"] == "nbjob-abc12" and rec["name"] == "daily" and rec["kind"] == "schedule"
    assert rec["attempt"] == 1 and rec["error"] is None and rec["html_error"] is None
    assert rec["parameters"] == {"alpha": 7}
    assert ISO_Z.match(rec["started"]) and ISO_Z.match(rec["finished"])
    assert rec["started"] <= rec["finished"]
    assert 0 < rec["duration_seconds"] <= elapsed
    assert rec["notebook"] == "work/param.ipynb"  # relative to $HOME
    assert rec["output_notebook"] == f".kubelab/runs/daily/{run_dir.name}/param.ipynb"
    assert rec["output_html"] == f".kubelab/runs/daily/{run_dir.name}/param.html"
    assert rec["hostname"] == socket.gethostname()
    assert rec["kernel"]

    nb = nbformat.read(str(run_dir / "param.ipynb"), as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "alpha = 7" in injected[0].source
    assert nb.cells.index(injected[0]) == 2  # right after the `parameters` cell
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "alpha is 7" in outputs
    assert "alpha is 7" in (run_dir / "param.html").read_text()
    assert (home / "alpha.txt").read_text() == "7"  # the kernel ran in $HOME

    # what a user follows in the container log
    assert f"kubelab: running {param_nb} (run nbjob-abc12) with parameters {{\"alpha\": 7}}" in proc.stdout
    assert "alpha is 7" in proc.stdout
    assert re.search(r"kubelab: run nbjob-abc12 succeeded in \d+\.\ds; output .*param\.ipynb", proc.stdout)
    assert hook.posts == []


def test_cwd_and_notebook_outside_home(env, tmp_path, kernel):
    nb = make_notebook(tmp_path / "elsewhere" / "where.ipynb", kernel[0],
                       "import os; open('cwd.txt', 'w').write(os.getcwd())")
    work = tmp_path / "workdir"
    work.mkdir()
    root = tmp_path / "runs"
    proc = run(env, "--notebook", str(nb), "--output-root", str(root), "--cwd", str(work),
               "--kernel", kernel[0], "--kind", "job", "--name", "train")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rec = record_of(only_run_dir(root))
    assert rec["notebook"] == str(nb)  # not under $HOME: absolute
    assert rec["output_notebook"].startswith(str(root) + "/")
    assert rec["parameters"] == {} and rec["kind"] == "job" and rec["kernel"] == kernel[0]
    assert (work / "cwd.txt").read_text() == str(work)


# --- failures -------------------------------------------------------------------------------


def test_failing_cell(env, tmp_path, home, failing_nb, hook):
    root = home / ".kubelab" / "runs" / "fails"
    proc = run(env, "--notebook", str(failing_nb), "--output-root", str(root), "--webhook", f"{hook.url}/hook")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert_no_runner_traceback(proc)

    run_dir = only_run_dir(root)
    rec = record_of(run_dir)
    assert rec["status"] == "Failed" and ISO_Z.match(rec["finished"]) and rec["duration_seconds"] > 0
    err = rec["error"]
    assert err["ename"] == "ZeroDivisionError" and err["evalue"] == "division by zero"
    assert "ZeroDivisionError" in err["traceback_tail"] and "x / 0" in err["traceback_tail"]
    assert "\x1b" not in err["traceback_tail"]
    assert len(err["traceback_tail"].splitlines()) <= 20

    # the executed notebook and its HTML are there, and `cell` indexes the failing cell in it
    nb = nbformat.read(str(run_dir / "fails.ipynb"), as_version=4)
    failing = nb.cells[err["cell"]]
    assert failing.source == "x / 0"
    assert [o.ename for o in failing.outputs if o.output_type == "error"] == ["ZeroDivisionError"]
    assert err["execution_count"] == failing.execution_count
    assert "after" not in json.dumps(nb.cells[err["cell"] + 1:][0].get("outputs", []))
    html = (run_dir / "fails.html").read_text()
    assert "ZeroDivisionError" in html and "before 1" in html
    assert rec["output_notebook"] and rec["output_html"]

    line = f"kubelab: cell {err['cell']} failed: ZeroDivisionError: division by zero"
    assert kubelab_stderr_lines(proc) == [line]
    assert (tmp_path / "termination-log").read_text() == line + "\n"
    assert "before 1" in proc.stdout

    # default --notify is failure: the hook got the failed run
    assert len(hook.posts) == 1
    post = hook.posts[0]
    assert post["path"] == "/hook"
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["User-Agent"] == "kubelab-runner"
    assert post["body"]["event"] == "run.failed"
    assert post["body"]["run"] == rec


def test_cell_timeout(env, home, kernel):
    nb = make_notebook(home / "slow.ipynb", kernel[0], "print('started')", "import time; time.sleep(120)",
                       "print('never')")
    root = home / "runs"
    t0 = time.monotonic()
    proc = run(env, "--notebook", str(nb), "--output-root", str(root), "--cell-timeout", "1")
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run_dir = only_run_dir(root)
    rec = record_of(run_dir)
    assert rec["status"] == "Failed" and rec["error"]["ename"] == "CellTimeoutError"
    executed = nbformat.read(str(run_dir / "slow.ipynb"), as_version=4)
    assert executed.cells[rec["error"]["cell"]].source == "import time; time.sleep(120)"
    assert (run_dir / "slow.html").is_file()
    [line] = kubelab_stderr_lines(proc)
    assert line.startswith(f"kubelab: cell {rec['error']['cell']} failed: CellTimeoutError: ")


def test_missing_notebook_is_a_usage_error(env, tmp_path, home, hook):
    root = home / "runs"
    proc = run(env, "--notebook", str(home / "nope.ipynb"), "--output-root", str(root),
               "--webhook", f"{hook.url}/hook", "--notify", "failure")
    assert proc.returncode == 2
    assert_no_runner_traceback(proc)
    line = f"kubelab: run {record_of(only_run_dir(root))['run_id']} failed: FileNotFoundError: " \
           f"notebook {home / 'nope.ipynb'} does not exist"
    assert proc.stderr.strip().splitlines() == [line]
    assert (tmp_path / "termination-log").read_text() == line + "\n"
    run_dir = only_run_dir(root)
    assert os.listdir(run_dir) == ["run.json"]
    rec = record_of(run_dir)
    assert rec["status"] == "Failed" and rec["finished"] and rec["duration_seconds"] is not None
    assert rec["error"]["ename"] == "FileNotFoundError" and rec["error"]["cell"] is None
    assert rec["output_notebook"] is None and rec["output_html"] is None
    assert [p["body"]["event"] for p in hook.posts] == ["run.failed"]
    assert hook.posts[0]["body"]["run"]["error"]["ename"] == "FileNotFoundError"


@pytest.mark.parametrize("params, message", [
    ('{"alpha": ', "--parameters-json is not valid JSON"),
    ("[1, 2]", "--parameters-json must be a JSON object"),
])
def test_bad_parameters_json_is_a_usage_error(env, home, param_nb, params, message):
    root = home / "runs"
    proc = run(env, "--notebook", str(param_nb), "--output-root", str(root), "--parameters-json", params)
    assert proc.returncode == 2
    assert_no_runner_traceback(proc)
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("kubelab: run ") and f"failed: ValueError: {message}" in line
    rec = record_of(only_run_dir(root))
    assert rec["status"] == "Failed" and rec["error"]["ename"] == "ValueError"
    assert message in rec["error"]["evalue"] and rec["error"]["cell"] is None


def test_unknown_kernel(env, home, param_nb):
    root = home / "runs"
    proc = run(env, "--notebook", str(param_nb), "--output-root", str(root), "--kernel", "no-such-kernel")
    assert proc.returncode == 1
    assert_no_runner_traceback(proc)
    rec = record_of(only_run_dir(root))
    assert rec["status"] == "Failed" and rec["error"]["ename"] == "NoSuchKernel"
    assert kubelab_stderr_lines(proc) == [
        f"kubelab: run {rec['run_id']} failed: NoSuchKernel: No such kernel named no-such-kernel"]


def test_html_export_failure_is_recorded(env, home, param_nb):
    """A failing HTML export is recorded in run.json; the run still succeeds."""
    code = ("import sys\n"
            "from kubelab.server_extension import runner\n"
            "def boom(*a):\n"
            "    raise RuntimeError('no template')\n"
            "runner._export_html = boom\n"
            "sys.exit(runner.main(sys.argv[1:]))\n")
    root = home / "runs"
    proc = subprocess.run([sys.executable, "-c", code, "--notebook", str(param_nb), "--output-root", str(root)],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rec = record_of(only_run_dir(root))
    assert rec["status"] == "Succeeded"
    assert rec["html_error"] == "RuntimeError: no template" and rec["output_html"] is None
    assert kubelab_stderr_lines(proc) == ["kubelab: warning: HTML export failed: RuntimeError: no template"]


def test_sigterm_marks_the_run_failed(env, home, kernel):
    nb = make_notebook(home / "long.ipynb", kernel[0], "print('started', flush=True)",
                       "import time; time.sleep(120)")
    root = home / "runs"
    proc = subprocess.Popen([*RUNNER, "--notebook", str(nb), "--output-root", str(root)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        seen = []
        while not any(line.startswith("Executing Cell 3") for line in seen):  # the sleep cell
            seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read()
    proc.stderr.close()
    assert "Traceback (most recent call last)" not in stderr.split("kubelab:")[-1]
    run_dir = only_run_dir(root)
    rec = record_of(run_dir)
    assert rec["status"] == "Failed" and rec["error"]["ename"] == "Terminated"
    assert rec["error"]["cell"] == 2
    assert (run_dir / "long.ipynb").is_file()
    assert "kubelab: cell 2 failed: Terminated: " in stderr


# --- webhooks -------------------------------------------------------------------------------


def test_webhook_on_success(env, home, param_nb, hook):
    root = home / "runs"
    proc = run(env, "--notebook", str(param_nb), "--output-root", str(root),
               "--webhook", f"{hook.url}/hook?token=s3cret", "--notify", "success,failure")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rec = record_of(only_run_dir(root))
    assert len(hook.posts) == 1
    assert hook.posts[0]["path"] == "/hook?token=s3cret"
    assert hook.posts[0]["body"] == {"event": "run.succeeded", "run": rec}
    assert "s3cret" not in proc.stdout + proc.stderr


def test_unreachable_webhook_keeps_exit_0(env, home, param_nb):
    root = home / "runs"
    proc = run(env, "--notebook", str(param_nb), "--output-root", str(root),
               "--webhook", f"http://127.0.0.1:{closed_port()}/hook", "--notify", "success")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_no_runner_traceback(proc)
    [warning] = kubelab_stderr_lines(proc)
    assert warning.startswith("kubelab: warning: webhook http://127.0.0.1 failed: ")
    assert record_of(only_run_dir(root))["status"] == "Succeeded"


def test_webhook_http_error_keeps_exit_code(env, home, hook):
    root = home / "runs"
    proc = run(env, "--notebook", str(home / "missing.ipynb"), "--output-root", str(root),
               "--webhook", f"{hook.url}/broken")
    assert proc.returncode == 2
    assert len(hook.posts) == 1
    lines = kubelab_stderr_lines(proc)
    assert len(lines) == 2 and "FileNotFoundError" in lines[0]
    assert lines[1] == "kubelab: warning: webhook http://127.0.0.1 failed: HTTP 500 Internal Server Error"


def test_bad_notify_value_is_rejected(env, home, param_nb):
    proc = run(env, "--notebook", str(param_nb), "--output-root", str(home / "runs"), "--notify", "sometimes")
    assert proc.returncode == 2 and "unknown --notify event 'sometimes'" in proc.stderr
    assert not (home / "runs").exists()


# --- run directories and records -------------------------------------------------------------


def test_retries_reuse_the_run_id_and_count_attempts(env, home):
    """Same KUBELAB_RUN_ID twice: attempt 2; a taken directory name gets -2."""
    env["KUBELAB_RUN_ID"] = "sched-daily-29000000"
    root = home / "runs"
    first = run(env, "--notebook", str(home / "missing.ipynb"), "--output-root", str(root))
    assert first.returncode == 2
    [first_dir] = root.iterdir()
    # take every name the second run could pick in the next minute
    now = dt.datetime.now(dt.timezone.utc)
    for s in range(60):
        (root / (now + dt.timedelta(seconds=s)).strftime("%Y%m%dT%H%M%SZ")).mkdir(exist_ok=True)
    second = run(env, "--notebook", str(home / "missing.ipynb"), "--output-root", str(root))
    assert second.returncode == 2
    second_dir = Path(runner.run_dir_for(str(root), "sched-daily-29000000"))
    assert second_dir != first_dir and second_dir.name.endswith("-2") and RUN_DIR.match(second_dir.name)
    assert record_of(first_dir)["attempt"] == 1
    assert record_of(second_dir)["attempt"] == 2
    assert runner.run_dir_for(str(root), "other") is None


def write_record(root: Path, name: str, **fields) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps(fields))
    return d


def test_find_runs_newest_first(tmp_path):
    root = tmp_path / "runs"
    write_record(root / "daily", "20250101T000000Z", run_id="a", started="2025-01-01T00:00:00Z", status="Succeeded")
    write_record(root / "daily", "20250101T000000Z-2", run_id="b", started="2025-01-01T00:00:00Z", status="Failed")
    write_record(root / "daily", "20250101T000000Z-10", run_id="b", started="2025-01-01T00:00:00Z",
                 status="Running")
    write_record(root / "daily", "20241231T235959Z", run_id="c", started="2024-12-31T23:59:59Z", status="Failed")
    write_record(root / "weekly", "20250102T000000Z", run_id="d", started="2025-01-02T00:00:00Z")
    partial = root / "daily" / "20250103T000000Z"
    partial.mkdir()
    (partial / "run.json").write_text('{"run_id": "e", "sta')  # truncated
    (root / "daily" / "20250104T000000Z").mkdir()  # no run.json (yet)

    runs = runner.find_runs(str(root))
    assert [r["run_id"] for r in runs] == ["d", "b", "b", "a", "c"]
    assert [os.path.basename(r["dir"]) for r in runs[:3]] == [
        "20250102T000000Z", "20250101T000000Z-10", "20250101T000000Z-2"]
    assert all(os.path.isabs(r["dir"]) for r in runs)
    assert all(set(runner.RECORD_KEYS) <= set(r) for r in runs)
    assert [r["run_id"] for r in runner.find_runs(str(root / "daily"))] == ["b", "b", "a", "c"]

    assert runner.run_dir_for(str(root), "b") == str(root / "daily" / "20250101T000000Z-10")
    assert runner.run_dir_for(str(root), "c") == str(root / "daily" / "20241231T235959Z")
    assert runner.run_dir_for(str(root), "e") is None
    assert runner.find_runs(str(tmp_path / "missing")) == []
    assert runner.run_dir_for(str(tmp_path / "missing"), "a") is None


def test_read_run_record_tolerates_missing_and_partial_files(tmp_path):
    assert runner.read_run_record(str(tmp_path / "nothing")) is None
    d = write_record(tmp_path, "r1", run_id="x", status="Running")
    rec = runner.read_run_record(str(d))
    assert rec["run_id"] == "x" and rec["status"] == "Running" and rec["error"] is None and rec["finished"] is None
    (d / "run.json").write_text("[1, 2]")
    assert runner.read_run_record(str(d)) is None
    (d / "run.json").write_text('{"run_id": ')
    assert runner.read_run_record(str(d)) is None


def test_module_import_is_light():
    code = ("import sys, kubelab.server_extension.runner\n"
            "print([m for m in ('papermill', 'nbformat', 'nbconvert', 'nbclient', 'jupyter_client', 'tornado',"
            " 'jupyter_server', 'urllib.request') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
