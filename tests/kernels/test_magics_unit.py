"""The %kubelab magics in a real IPython shell, without a cluster.

Commands that need the cluster run against a small fake service layer (the
same methods and errors as ``kubelab.server_extension.services``), so these
tests check the grammar, the requests the magics build, the one-line errors
and the displays.
"""
from __future__ import annotations

import json
import os
import pickle
import re

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets import TraitError

from kubelab.kernels import magics as M
from kubelab.kernels import views
from kubelab.server_extension.services import Conflict, NotFound

SCHEDULE_LABEL, JOB_LABEL = "kubelab.io/schedule", "kubelab.io/job"


# -- a fake service layer -------------------------------------------------------------------------
class FakeKube:
    def __init__(self):
        self.jobs: dict[str, dict] = {}

    def get(self, api_version, kind, name, namespace=None):
        return self.jobs.get(name)


class FakeWorkspace:
    def __init__(self, home):
        self.home = str(home)
        self.kube = FakeKube()

    def call(self, fn, *args, what="", **kw):
        return fn(*args, **kw)


class FakeSchedules:
    def __init__(self, kube):
        self.kube, self.calls, self.items = kube, [], {}
        self.run_status = ["Pending", "Running", "Succeeded"]

    def create(self, req):
        self.calls.append(("create", req))
        view = {"suspend": False, "next_runs": ["2026-01-01T05:00:00Z"], "active_runs": [], **req}
        self.items[req["name"]] = view
        return view

    def update(self, name, changes):
        self.calls.append(("update", name, changes))
        return {**self.get(name), **changes}

    def get(self, name):
        if name not in self.items:
            raise NotFound(f"schedule {name!r} not found")
        return self.items[name]

    def list(self):
        return list(self.items.values())

    def set_suspended(self, name, suspend):
        return self.update(name, {"suspend": suspend})

    def delete(self, name):
        self.get(name)
        del self.items[name]

    def run_now(self, name, parameters=None):
        self.get(name)
        self.calls.append(("run_now", name, parameters))
        rid = f"{name}-1795441288"
        self.kube.jobs[rid] = {"metadata": {"name": rid, "labels": {SCHEDULE_LABEL: name}}}
        return {"id": rid, "schedule": name, "status": "Pending", "trigger": "manual"}

    def run(self, name, run_id):
        status = self.run_status.pop(0) if len(self.run_status) > 1 else self.run_status[0]
        return {"id": run_id, "schedule": name, "status": status,
                "started": None if status == "Pending" else "2026-01-01T05:00:00Z"}

    def runs(self, name):
        self.get(name)
        return [{"id": f"{name}-1795441288", "status": "Succeeded", "trigger": "manual"}]

    def run_logs(self, name, run_id, follow=False, tail_lines=None):
        self.calls.append(("run_logs", name, run_id, follow, tail_lines))
        return iter([b"cell 1: alpha=0.5\n", "caf\u00e9 ".encode()[:4], "caf\u00e9 ".encode()[4:], b"done"])

    def preview(self, schedule, tz=None, n=5):
        from kubelab.server_extension.services import ScheduleService

        return ScheduleService().preview(schedule, tz, n)


class FakeJobs:
    def __init__(self, kube):
        self.kube, self.calls = kube, []
        self.status = ["Running", "Succeeded"]

    def submit(self, req):
        self.calls.append(("submit", req))
        self.kube.jobs[req["name"]] = {"metadata": {"name": req["name"], "labels": {JOB_LABEL: req["name"]}}}
        return {"name": req["name"], "status": "Pending", "workers": req.get("workers", 1)}

    def get(self, name):
        if name not in self.kube.jobs:
            raise NotFound(f"job {name!r} not found")
        status = self.status.pop(0) if len(self.status) > 1 else self.status[0]
        return {"name": name, "status": status, "started": "2026-01-01T05:00:00Z", "pods": []}

    def logs(self, name, worker=0, follow=False, tail_lines=None):
        self.calls.append(("logs", name, worker, follow, tail_lines))
        return iter([b"epoch 1 loss 0.5\n"])

    def list(self):
        return [{"name": n, "status": "Running"} for n in self.kube.jobs]


class FakeModels:
    def __init__(self):
        self.calls, self.items = [], {}

    def _version(self, name, n):
        return {"model": name, "version": n, "name": f"{name}-v{n}", "format": "onnx",
                "validation": {"status": "valid"}, "artifact": {"uri": f"s3://b/m/{name}/{n}/", "bytes": 2048},
                "signature": {"inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]}, "metrics": {}}

    def register(self, req):
        self.calls.append(("register", req))
        m = self.items.setdefault(req["name"], {"name": req["name"], "aliases": {}, "versions": []})
        v = self._version(req["name"], len(m["versions"]) + 1)
        m["versions"].append(v)
        m["latest_version"] = v["version"]
        for a in req.get("aliases") or []:
            m["aliases"][a] = v["version"]
        return v

    def list(self):
        return list(self.items.values())

    def get(self, name):
        if name not in self.items:
            raise NotFound(f"model {name!r} not found")
        return dict(self.items[name])

    def version(self, name, ref):
        m = self.get(name)
        n = m["aliases"].get(ref) or int(str(ref).lstrip("v"))
        return m["versions"][n - 1]

    def set_alias(self, name, alias, ref):
        self.calls.append(("set_alias", name, alias, ref))
        self.items[name]["aliases"][alias] = self.version(name, ref)["version"]
        return self.get(name)

    def remove_alias(self, name, alias):
        self.calls.append(("remove_alias", name, alias))
        if alias not in self.get(name)["aliases"]:
            raise NotFound(f"model {name!r} has no alias {alias!r}")
        del self.items[name]["aliases"][alias]
        return self.get(name)


class FakeServing:
    def __init__(self, models):
        self.models, self.calls, self.items = models, [], {}
        self.states = ["Starting", "Ready"]
        self.answer = {"model_name": "iris", "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [2], "data": [0, 2]},
            {"name": "probabilities", "datatype": "FP32", "shape": [2, 3], "data": [0.9, 0.05, 0.05, 0.1, 0.2, 0.7]}]}

    def _view(self, name):
        rec = self.items[name]
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        ready = rec["replicas"] if state == "Ready" else 0
        return {"name": name, "kind": "Deployment", **rec, "ready_replicas": ready, "state": state,
                "problems": ["server failed: no model file"] if state == "Failing" else [],
                "pods": [{"name": f"{name}-abc", "phase": "Running", "ready": state == "Ready",
                          "version": str(rec["version"])}],
                "url": f"http://{name}.ns.svc/v2/models/{name}/infer"}

    def deploy(self, req):
        self.calls.append(("deploy", req))
        v = self.models.version(req["model"], req.get("version") or 1)
        self.items[req["name"]] = {"model": req["model"], "version": v["version"], "alias": None,
                                   "replicas": req.get("replicas", 1), "resource_group": "cpu"}
        return self.status(req["name"])

    def status(self, name):
        if name not in self.items:
            raise NotFound(f"inference service {name!r} not found")
        return self._view(name)

    def list(self):
        return [{"name": n, **r, "ready_replicas": 1} for n, r in self.items.items()]

    def update(self, name, changes):
        self.calls.append(("update", name, changes))
        self.status(name)
        self.items[name].update(changes)
        return self.status(name)

    def rollback(self, name):
        self.calls.append(("rollback", name))
        return self.update(name, {"version": 1})

    def delete(self, name):
        self.calls.append(("delete", name))
        self.status(name)
        del self.items[name]

    def model(self, name):
        view = self.models.get(name)
        view["served_by"] = [{"service": n, "version": r["version"], "alias": r["alias"]}
                             for n, r in self.items.items() if r["model"] == name]
        return view

    def delete_model(self, name):
        self.calls.append(("delete_model", name))
        served = [n for n, r in self.items.items() if r["model"] == name]
        if served:
            raise Conflict(f"model {name!r} is served by {', '.join(served)}; delete those services first")
        self.models.get(name)
        del self.models.items[name]

    def predict(self, name, body):
        self.calls.append(("predict", name, body))
        self.status(name)
        return {"service": name, "model": self.items[name]["model"], "version": self.items[name]["version"],
                "outputs": {o["name"]: o["data"] for o in self.answer["outputs"]}, "response": self.answer}


class FakeServices:
    def __init__(self, home):
        self.workspace = FakeWorkspace(home)
        self.schedules = FakeSchedules(self.workspace.kube)
        self.jobs = FakeJobs(self.workspace.kube)
        self.models = FakeModels()
        self.serving = FakeServing(self.models)

    def info(self):
        return {"user": "ann", "namespace": "kubelab-ann", "image": "img", "home": "/home/jovyan",
                "default_resource_group": "cpu",
                "resource_groups": [{"name": "cpu", "display_name": "CPU", "sizes": [
                    {"name": "small", "cpu": "500m", "memory": "1Gi"}], "max_gpus": 0}]}


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shell():
    from traitlets.config import Config

    c = Config()
    c.HistoryManager.hist_file = ":memory:"  # leave ~/.ipython alone
    ip = InteractiveShell.instance(config=c)
    ip.run_line_magic("load_ext", "kubelab.kernels")
    return ip


def _magics(ip) -> M.KubelabMagics:
    return ip.magics_manager.registry["KubelabMagics"]


@pytest.fixture
def ip(shell, monkeypatch):
    """The shell, outside a kubelab server (no settings), with fresh services."""
    monkeypatch.delenv("KUBELAB_SETTINGS", raising=False)
    _magics(shell)._services = None
    yield shell
    _magics(shell)._services = None


@pytest.fixture
def fake(ip, tmp_path):
    services = FakeServices(tmp_path)
    _magics(ip)._services = services
    return services


def run(ip, capsys, code: str):
    """Run a cell; returns (its value, stdout, stderr), after checking nothing raised."""
    res = ip.run_cell(code)
    out, err = capsys.readouterr()
    assert res.error_before_exec is None and res.error_in_exec is None, (out, err)
    return res.result, out, err


def assert_one_line(out: str, err: str, contains: str = "") -> str:
    assert "Traceback" not in out + err and "Error" not in out, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kubelab: "), err
    assert contains in lines[0], lines[0]
    return lines[0]


# -- loading and configuration --------------------------------------------------------------------
def test_load_ext_registers_line_and_cell_magic(ip):
    assert "kubelab" in ip.magics_manager.magics["line"]
    assert "kubelab" in ip.magics_manager.magics["cell"]
    ip.run_line_magic("load_ext", "kubelab.kernels")  # twice: still one instance
    assert sum(isinstance(m, M.KubelabMagics) for m in ip.magics_manager.registry.values()) == 1


def test_unload_and_reload(ip):
    ip.run_line_magic("unload_ext", "kubelab.kernels")
    assert "kubelab" not in ip.magics_manager.magics["line"]
    assert not any(isinstance(c, M.KubelabMagics) for c in ip.configurables)
    ip.run_line_magic("load_ext", "kubelab.kernels")
    assert "kubelab" in ip.magics_manager.magics["line"]


def test_loading_creates_no_services_and_imports_nothing_heavy(tmp_path):
    import subprocess
    import sys

    code = ("import sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
            "ip = InteractiveShell.instance()\nip.run_line_magic('load_ext', 'kubelab.kernels')\n"
            "heavy = [m for m in ('requests', 'ipywidgets', 'kubelab.server_extension.services') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    env = {k: v for k, v in os.environ.items() if k != "KUBELAB_SETTINGS"}
    env["IPYTHONDIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_config_traits_have_examples_and_come_from_the_shell_config(ip):
    for trait in ("poll_interval", "show_widgets", "log_lines"):
        help_text = M.KubelabMagics.class_traits()[trait].help
        assert f"c.KubelabMagics.{trait} = " in help_text
    m = _magics(ip)
    ip.run_line_magic("config", "KubelabMagics.poll_interval = 0.5")
    assert m.poll_interval == 0.5
    with pytest.raises(TraitError):
        m.poll_interval = 0
    ip.run_line_magic("config", "KubelabMagics.poll_interval = 2.0")
    from traitlets.config import Config

    c = Config()
    c.KubelabMagics.show_widgets = False
    c.KubelabMagics.log_lines = 7
    other = M.KubelabMagics(config=c)
    assert other.show_widgets is False and other.log_lines == 7


def test_services_are_created_with_the_shell_config(ip):
    ip.config.ScheduleService.default_timezone = "Europe/Berlin"
    try:
        svc = _magics(ip).services
        assert svc.schedules.default_timezone == "Europe/Berlin"
    finally:
        del ip.config.ScheduleService["default_timezone"]


# -- one-line errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("line, contains", [
    ("bogus", "unknown command 'bogus'"),
    ("schedule", "schedule needs a command"),
    ("schedule frob x", "unknown schedule command 'frob'"),
    ("jobs launch x", "unknown jobs command 'launch'"),
    ("schedule create x", "required: --notebook, --cron"),
    ("schedule create x --notebook a.ipynb --cron '0 6 * * *' --bogus 1", "unrecognized arguments: --bogus 1"),
    ("schedule create x --notebook a.ipynb --cron '0 6 * * *' --param alpha", "--param 'alpha' must be KEY=VALUE"),
    ("schedule create x --notebook a.ipynb --cron '0 6 * * *' --param =1", "must be KEY=VALUE"),
    ("schedule run x --param 'a b'", "must be KEY=VALUE"),
    ("jobs submit j --script a.py --gpus two", "argument --gpus: invalid int value: 'two'"),
    ("jobs submit j --script a.py --timeout soon", "'soon' is not a duration"),
    ("jobs submit j --script a.py --env NOVALUE", "--env 'NOVALUE' must be KEY=VALUE"),
    ("jobs submit j", "exactly one of --script, --notebook or --command"),
    ("jobs list -- x", "takes no arguments after '--'"),
    ("schedule preview '*/15 * * * *", "cannot read the command line: No closing quotation"),
    ("schedule preview 'bad cron'", "invalid cron expression 'bad cron'"),
    ("schedule preview '0 6 * * *' --tz Mars/Base", "unknown time zone 'Mars/Base'"),
    ("schedule preview '0 6 * * *' -n 0", "-n must be between 1 and 50"),
    ("train x", "train is a cell magic"),
    ("info", "KUBELAB_SETTINGS is not set"),
    ("schedule list", "KUBELAB_SETTINGS is not set"),
    # models
    ("models", "models needs a command: list, show, version, register, alias, unalias, delete"),
    ("models frob x", "unknown models command 'frob'"),
    ("models show", "required: name"),
    ("models version m", "required: REF"),
    ("models alias m production", "required: REF"),
    ("models register m", "exactly one of --path (a file or folder in your home) or --uri"),
    ("models register m --path models/m --uri s3://b/k", "exactly one of --path"),
    ("models register m --path models/m --format pickle", "argument --format: invalid choice: 'pickle'"),
    ("models register m --path models/m --metric accuracy", "--metric 'accuracy' must be KEY=VALUE"),
    ("models register m --path models/m --metric accuracy=high", "--metric 'accuracy=high' must be NAME=NUMBER"),
    ("models register m --path models/m --metric ok=true", "--metric 'ok=true' must be NAME=NUMBER"),
    ("models register m --path models/m --lineage iris", "--lineage 'iris' must be KEY=VALUE"),
    ("models list", "KUBELAB_SETTINGS is not set"),
    # serving
    ("serve", "serve needs a command: NAME --model M (deploy), list, status, update, rollback, delete"),
    ("serve frob", "unknown serve command 'frob': deploy with %kubelab serve NAME --model M"),
    ("serve iris --version 2", "unknown serve command 'iris'"),
    ("serve iris --model", "argument --model: expected one argument"),
    ("serve --model iris", "required: name"),
    ("serve iris --model iris --replicas two", "argument --replicas: invalid int value: 'two'"),
    ("serve status", "required: name"),
    ("serve update iris", "serve update: give at least one option to change"),
    ("serve rollback iris now", "unrecognized arguments: now"),
    ("serve list", "KUBELAB_SETTINGS is not set"),
    # predict
    ("predict", "required: NAME"),
    ("predict iris", "predict: give DATA, a Python expression for the rows, e.g. %kubelab predict iris X_test[:5]"),
    ("predict iris undefined_rows[:5]", "predict: cannot evaluate undefined_rows[:5]: NameError"),
    ("predict iris [[1, 2]", "predict: cannot evaluate [[1, 2]: SyntaxError"),
    ("predict iris 42", "DATA must be rows: a list of lists, a numpy array or a pandas DataFrame (not int)"),
    ("predict iris 'text'", "DATA must be rows"),
    ("predict iris []", "DATA has no rows"),
    ("predict iris [[1, 2], 3]", "DATA mixes rows and single values"),
    ("predict iris [[[1, 2]]]", "DATA has more than two dimensions; send a V2 request"),
    ("predict iris {'rows': [[1]]}", "DATA is a dict"),
    ("predict iris [[5.1, 3.5, 1.4, 0.2]]", "KUBELAB_SETTINGS is not set"),
])
def test_a_mistake_is_one_line_on_stderr(ip, capsys, line, contains):
    value, out, err = run(ip, capsys, f"%kubelab {line}")
    assert value is None
    assert_one_line(out, err, contains)


def test_cell_magic_mistakes_are_one_line(ip, capsys):
    _, out, err = run(ip, capsys, "%%kubelab jobs list\nprint(1)")
    assert_one_line(out, err, "%%kubelab takes 'train NAME [options]'")
    _, out, err = run(ip, capsys, "%%kubelab train x\n   \n")
    assert_one_line(out, err, "the cell is empty")
    _, out, err = run(ip, capsys, "%%kubelab train\nprint(1)")
    assert_one_line(out, err, "required: name")


def test_service_errors_are_one_line(fake, ip, capsys):
    value, out, err = run(ip, capsys, "%kubelab schedule show nope")
    assert value is None
    assert assert_one_line(out, err) == "kubelab: schedule 'nope' not found"
    _, out, err = run(ip, capsys, "%kubelab logs nothing-here")
    assert_one_line(out, err, "no schedule run or training job named 'nothing-here'")

    def refuse(*a, **kw):
        raise Conflict("run 'x' has not started:\n  Unschedulable: 0/2 nodes are available")
    fake.schedules.run_logs = refuse
    fake.schedules.create({"name": "s", "notebook": "a.ipynb", "schedule": "0 6 * * *"})
    fake.schedules.run_now("s")
    _, out, err = run(ip, capsys, "%kubelab logs s-1795441288")
    assert assert_one_line(out, err) == \
        "kubelab: run 'x' has not started: Unschedulable: 0/2 nodes are available"


def test_help(ip, capsys):
    for line in ("", "help", "--help"):
        value, out, err = run(ip, capsys, f"%kubelab {line}")
        assert value is None and not err
        assert "%kubelab schedule create NAME --notebook PATH" in out and "%%kubelab train NAME" in out
    _, out, err = run(ip, capsys, "%kubelab schedule create --help")
    assert out.startswith("usage: %kubelab schedule create") and "--cron" in out and not err
    _, out, err = run(ip, capsys, "%kubelab jobs submit j --command ls -h")  # -h belongs to the command
    assert "usage" not in out
    assert "%kubelab schedule create" in M.KubelabMagics.kubelab.__doc__


# -- --param and the requests the magics build ----------------------------------------------------
@pytest.mark.parametrize("text, value", [
    ("0.5", 0.5), ("3", 3), ("true", True), ("false", False), ("null", None), ("[1, 2]", [1, 2]),
    ('{"a": 1}', {"a": 1}), ('"quoted"', "quoted"), ("hello", "hello"), ("", ""), ("NaN", "NaN"),
    ("Infinity", "Infinity"), ("2026-01-01", "2026-01-01"), ("a=b", "a=b"),
])
def test_param_values_are_json_when_they_parse(text, value):
    assert M.parse_value(text) == value and type(M.parse_value(text)) is type(value)


def test_parse_pairs():
    assert M.parse_pairs(["alpha=0.5", "tags=[\"a\",\"b\"]", "name=run 1", "expr=a=b"], "--param") == \
        {"alpha": 0.5, "tags": ["a", "b"], "name": "run 1", "expr": "a=b"}
    assert M.parse_pairs(["N=1"], "--env", json_values=False) == {"N": "1"}
    with pytest.raises(M.KubelabUsage):
        M.parse_pairs(["novalue"], "--param")


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400),
                                           ("1.5h", 5400)])
def test_durations(text, seconds):
    assert M.duration(text) == seconds


def test_schedule_create_builds_the_request(fake, ip, capsys):
    value, out, err = run(ip, capsys, """%kubelab schedule create nightly --notebook reports/daily.ipynb \
--cron "0 6 * * *" --tz Europe/Berlin --param alpha=0.5 --param flags='[1, "x"]' --param who=team \
--group gpu-a100 --size standard --gpus 1 --timeout 2h --retries 2 --webhook https://hooks.example/x \
--notify failure,success --suspend --concurrency Replace""")
    assert not err, err
    assert fake.schedules.calls[-1] == ("create", {
        "name": "nightly", "notebook": "reports/daily.ipynb", "schedule": "0 6 * * *", "timezone": "Europe/Berlin",
        "resource_group": "gpu-a100", "size": "standard", "gpus": 1, "timeout_seconds": 7200, "retries": 2,
        "webhook": "https://hooks.example/x", "concurrency_policy": "Replace",
        "parameters": {"alpha": 0.5, "flags": [1, "x"], "who": "team"},
        "notify": ["failure", "success"], "suspend": True})
    assert isinstance(value, dict) and value["name"] == "nightly"
    assert "schedule nightly created" in out and "Europe/Berlin" in out  # the Out[] table


def test_cron_may_be_unquoted(fake, ip, capsys):
    run(ip, capsys, "%kubelab schedule create q --notebook a.ipynb --cron */15 * * * * --tz UTC")
    assert fake.schedules.calls[-1][1]["schedule"] == "*/15 * * * *"


def test_update_sends_only_what_is_given(fake, ip, capsys):
    run(ip, capsys, "%kubelab schedule create s --notebook a.ipynb --cron '0 6 * * *'")
    _, out, err = run(ip, capsys, "%kubelab schedule update s --cron '0 7 * * *' --param alpha=1")
    assert not err
    assert fake.schedules.calls[-1] == ("update", "s", {"schedule": "0 7 * * *", "parameters": {"alpha": 1}})
    _, out, err = run(ip, capsys, "%kubelab schedule update s")
    assert_one_line(out, err, "give at least one option")
    value, _, _ = run(ip, capsys, "%kubelab schedule suspend s")
    assert fake.schedules.calls[-1] == ("update", "s", {"suspend": True}) and value["suspend"] is True


def test_paths_are_relative_to_the_kernels_directory(fake, ip, capsys, tmp_path, monkeypatch):
    (tmp_path / "analysis").mkdir()
    monkeypatch.chdir(tmp_path / "analysis")
    run(ip, capsys, "%kubelab schedule create a --notebook report.ipynb --cron '0 6 * * *'")
    assert fake.schedules.calls[-1][1]["notebook"] == "analysis/report.ipynb"
    run(ip, capsys, "%kubelab schedule create b --notebook ../top.ipynb --cron '0 6 * * *'")
    assert fake.schedules.calls[-1][1]["notebook"] == "top.ipynb"
    run(ip, capsys, "%kubelab schedule create c --notebook /home/jovyan/x.ipynb --cron '0 6 * * *'")
    assert fake.schedules.calls[-1][1]["notebook"] == "/home/jovyan/x.ipynb"
    monkeypatch.chdir("/")
    run(ip, capsys, "%kubelab schedule create d --notebook x.ipynb --cron '0 6 * * *'")
    assert fake.schedules.calls[-1][1]["notebook"] == "x.ipynb"


def test_schedule_run_with_params_prints_one_line_without_a_frontend(fake, ip, capsys):
    run(ip, capsys, "%kubelab schedule create s --notebook a.ipynb --cron '0 6 * * *'")
    value, out, err = run(ip, capsys, "r = %kubelab schedule run s --param alpha=0.75 --param note=hi")
    assert not err
    assert fake.schedules.calls[-1] == ("run_now", "s", {"alpha": 0.75, "note": "hi"})
    assert out.strip() == ("kubelab: run 's-1795441288' of schedule 's' started (Pending); "
                           "follow it with %kubelab logs s-1795441288 -f")
    assert ip.user_ns["r"]["id"] == "s-1795441288"


def test_jobs_submit_builds_the_request(fake, ip, capsys):
    value, out, err = run(ip, capsys, "%kubelab jobs submit j1 --script train.py --group gpu-a100 --gpus 2 "
                                      "--workers 2 --image python:3.12 --env LR=0.1 --env MODE=fast --timeout 30m "
                                      "--retries 1 --output-model models/m1 --no-datasets --param epochs=3 "
                                      "--queue q1 -- --lr 0.1 --name 'a b'")
    assert not err, err
    assert fake.jobs.calls[-1] == ("submit", {
        "name": "j1", "script": "train.py", "resource_group": "gpu-a100", "gpus": 2, "workers": 2,
        "image": "python:3.12", "env": {"LR": "0.1", "MODE": "fast"}, "timeout_seconds": 1800, "retries": 1,
        "output_model": "models/m1", "datasets": False, "parameters": {"epochs": 3}, "queue": "q1",
        "args": ["--lr", "0.1", "--name", "a b"]})
    assert "kubelab: job 'j1' submitted (Pending); follow it with %kubelab logs j1 -f" in out
    run(ip, capsys, "%kubelab jobs submit j2 --command python -c 'print(1)'")
    assert fake.jobs.calls[-1][1]["command"] == ["python", "-c", "print(1)"]
    run(ip, capsys, "%kubelab jobs submit j3 --command 'python -c \"print(2)\"' ")
    assert fake.jobs.calls[-1][1]["command"] == ["python", "-c", "print(2)"]
    run(ip, capsys, "%kubelab jobs submit j4 --notebook nb.ipynb --kernel python3")
    assert fake.jobs.calls[-1][1] == {"name": "j4", "notebook": "nb.ipynb", "kernel": "python3"}


def test_train_cell_submits_the_cell_as_code(fake, ip, capsys):
    code = "import os\nprint('hello from', os.environ.get('KUBELAB_RUN_ID'))\n"
    value, out, err = run(ip, capsys, f"%%kubelab train t1 --size small --env A=1 --param lr=0.01\n{code}")
    assert not err, err
    assert fake.jobs.calls[-1] == ("submit", {"name": "t1", "size": "small", "env": {"A": "1"},
                                              "parameters": {"lr": 0.01}, "code": code})
    assert value["name"] == "t1"


# -- results and displays -------------------------------------------------------------------------
def test_preview_needs_no_cluster_and_returns_five_times(ip, capsys):
    value, out, err = run(ip, capsys, '%kubelab schedule preview "*/15 * * * *" --tz UTC')
    assert not err
    assert len(value["next_runs"]) == 5 and all(t.endswith(("00:00Z", "15:00Z", "30:00Z", "45:00Z"))
                                                for t in value["next_runs"])
    assert value["timezone"] == "UTC"
    assert "next runs of '*/15 * * * *' (UTC)" in out  # its display
    value, _, _ = run(ip, capsys, "%kubelab schedule preview '0 6 * * *' --tz Europe/Berlin -n 3")
    assert len(value["next_runs"]) == 3 and value["next_runs_local"][0].endswith("+01:00") or \
        value["next_runs_local"][0].endswith("+02:00")


def test_results_are_the_services_values(fake, ip, capsys):
    run(ip, capsys, "%kubelab schedule create s --notebook a.ipynb --cron '0 6 * * *'")
    value, out, err = run(ip, capsys, "%kubelab schedule list")
    assert isinstance(value, list) and value == fake.schedules.list()
    assert json.loads(json.dumps(value)) == value
    assert type(pickle.loads(pickle.dumps(value))) is list
    import copy

    assert type(copy.deepcopy(value)) is list and copy.deepcopy(value) == value
    assert "schedules (1)" in out and "Active" in out
    info, out, _ = run(ip, capsys, "%kubelab info")
    assert info["namespace"] == "kubelab-ann" and type(pickle.loads(pickle.dumps(info))) is dict
    assert "kubelab-ann" in out and "small (500m CPU, 1Gi)" in out
    text, markup = info._kl_bundle()
    assert "<table" in markup and "kubelab-ann" in markup
    value, out, _ = run(ip, capsys, "%kubelab schedule delete s")
    assert value == {"name": "s", "deleted": True, "message": "schedule 's' deleted"}
    assert "schedule 's' deleted" in out


def test_every_renderer_copes_with_sparse_views():
    assert {"schedules", "runs", "jobs"} <= views.LIST_VIEWS <= set(views.RENDERERS)
    for name, render in views.RENDERERS.items():
        for value in ([] if name in views.LIST_VIEWS else {}, [{}] if name in views.LIST_VIEWS else {"name": "x"}):
            text, markup = render(value, "")
            assert isinstance(text, str) and isinstance(markup, str), name
    text, _ = views.render_jobs([{"name": "j", "status": "Failed", "message": "exit 1", "workers": 2,
                                  "resource_group": "cpu", "size": "small"}], "")
    assert "j" in text and "Failed" in text and "cpu/small" in text


def test_logs_of_a_run_and_of_a_job(fake, ip, capsys):
    run(ip, capsys, "%kubelab schedule create s --notebook a.ipynb --cron '0 6 * * *'")
    fake.schedules.run_now("s")
    value, out, err = run(ip, capsys, "%kubelab logs s-1795441288 --tail 10")
    assert value is None and not err
    assert out == "cell 1: alpha=0.5\ncaf\u00e9 done\n"
    assert fake.schedules.calls[-1] == ("run_logs", "s", "s-1795441288", False, 10)
    fake.jobs.submit({"name": "j"})
    _, out, err = run(ip, capsys, "%kubelab logs j --worker 1")
    assert out == "epoch 1 loss 0.5\n" and fake.jobs.calls[-1] == ("logs", "j", 1, False, None)
    _, out, err = run(ip, capsys, "%kubelab logs s-1795441288 --worker 1")
    assert_one_line(out, err, "--worker is for training jobs")


def test_logs_follow_waits_for_the_start_then_reports_the_end(fake, ip, capsys):
    fake.jobs.submit({"name": "j"})
    fake.jobs.status = ["Pending", "Running", "Succeeded"]
    real_logs, attempts = fake.jobs.logs, []

    def logs(name, worker=0, follow=False, tail_lines=None):
        attempts.append(follow)
        if len(attempts) == 1:
            raise Conflict("worker 0 of job 'j' has not started: its pod is pending")
        return real_logs(name, worker, follow, tail_lines)
    fake.jobs.logs = logs
    _magics(ip).poll_interval = 0.1
    try:
        _, out, err = run(ip, capsys, "%kubelab logs j -f")
    finally:
        _magics(ip).poll_interval = 2.0
    assert not err, err
    assert out.splitlines() == ["kubelab: waiting for job j to start: worker 0 of job 'j' has not started: "
                                "its pod is pending", "epoch 1 loss 0.5", "kubelab: job j: Succeeded"]
    assert attempts == [True, True]


def test_status_watcher_polls_until_the_end(fake):
    """The live widget (ipywidgets work without a frontend; they just have no view)."""
    from kubelab.kernels.widgets import StatusWatcher

    sch = fake.schedules
    sch.create({"name": "s", "notebook": "a.ipynb", "schedule": "0 6 * * *"})
    run0 = sch.run_now("s")
    w = StatusWatcher("run", run0["id"], lambda: sch.run("s", run0["id"]),
                      lambda n: M._text(sch.run_logs("s", run0["id"], False, n)), interval=0.05, initial=run0)
    assert w.progress.value == 1 and "Pending" in w.status.value
    w.start()
    w.join(10)
    assert w.done and w.view["status"] == "Succeeded"
    assert w.progress.value == w.progress.max and w.progress.bar_style == "success"
    assert "Succeeded" in w.status.value and "refreshing" not in w.status.value
    assert w.output.outputs[0]["text"].startswith("cell 1: alpha=0.5")
    assert sch.calls[-1][3:] == (False, 20)
    assert "run s-1795441288: Succeeded" in w.status_line()


def test_status_watcher_stops_when_the_job_is_deleted(fake):
    from kubelab.kernels.widgets import StatusWatcher

    def gone():
        raise NotFound("job 'x' not found")
    w = StatusWatcher("job", "x", gone, lambda n: "", interval=0.05).start()
    w.join(5)
    assert w.done and "not found" in w.status.value and w.progress.bar_style == "danger"


def test_widgets_in_a_kernel_show_once_and_poll(fake, ip, capsys, monkeypatch):
    """With a frontend: a live widget is displayed, its result is not shown a second time."""
    shown = []
    monkeypatch.setattr(views, "_rich_frontend", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.extend(objs))
    m = _magics(ip)
    m.poll_interval = 0.1
    try:
        fake.jobs.status = ["Running", "Succeeded"]
        value, out, err = run(ip, capsys, "%%kubelab train t2\nprint('hi')")
        # (a kernel's displayhook sends nothing for it; this plain shell still writes its "Out[n]: " prompt)
        assert not err and re.sub(r"Out\[\d+\]:", "", out).strip() == "", (out, err)
        import ipywidgets

        assert len(shown) == 1 and isinstance(shown[0], ipywidgets.VBox)
        watcher = m.watchers[-1]
        watcher.join(10)
        assert watcher.view["status"] == "Succeeded" and "epoch 1 loss" in watcher.log_text
        # shown again in a later cell: the same live widget
        value._ipython_display_()
        assert shown[-1] is shown[0]
    finally:
        m.poll_interval = 2.0


def test_show_widgets_off_prints_one_line_in_a_kernel(fake, ip, capsys, monkeypatch):
    monkeypatch.setattr(views, "_rich_frontend", lambda: True)
    m = _magics(ip)
    m.show_widgets = False
    try:
        _, out, err = run(ip, capsys, "x = %kubelab jobs submit j9 --script a.py")
    finally:
        m.show_widgets = True
    assert out.strip() == "kubelab: job 'j9' submitted (Pending); follow it with %kubelab logs j9 -f"


# -- models, serving and predict ------------------------------------------------------------------
def test_model_formats_are_the_registrys():
    from kubelab.core.models import FORMATS

    assert M.M_FORMATS == FORMATS


def test_models_register_builds_the_request(fake, ip, capsys, tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    value, out, err = run(ip, capsys, "%kubelab models register iris --path models/iris/ --format onnx "
                                      "--description 'iris classifier' --tag demo,iris --tag mg "
                                      "--metric accuracy=0.97 --metric f1=1 --lineage dataset=iris "
                                      "--lineage notebook=train.ipynb --alias staging --alias candidate")
    assert not err, err
    assert fake.models.calls[-1] == ("register", {
        "name": "iris", "path": "work/models/iris", "format": "onnx", "description": "iris classifier",
        "tags": ["demo", "iris", "mg"], "metrics": {"accuracy": 0.97, "f1": 1},
        "lineage": {"dataset": "iris", "notebook": "train.ipynb"}, "aliases": ["staging", "candidate"]})
    assert value["version"] == 1 and type(pickle.loads(pickle.dumps(value))) is dict
    assert "model iris version 1 registered (staging, candidate)" in out
    assert "%kubelab serve iris --model iris --version 1" in out and "X: FP32 [-1, 4]" in out
    run(ip, capsys, "%kubelab models register iris --uri s3://kubelab/users/ann/m/model.onnx")
    assert fake.models.calls[-1] == ("register", {"name": "iris", "uri": "s3://kubelab/users/ann/m/model.onnx"})


def test_models_list_show_version_alias_and_delete(fake, ip, capsys):
    fake.models.register({"name": "iris", "aliases": ["production"]})
    fake.models.register({"name": "iris"})
    value, out, err = run(ip, capsys, "%kubelab models list")
    assert not err and [m["name"] for m in value] == ["iris"]
    assert "models (1)" in out and "production -> v1" in out
    value, out, _ = run(ip, capsys, "%kubelab models show iris")
    assert value["served_by"] == [] and len(value["versions"]) == 2
    assert "model iris" in out and "versions (2)" in out and "valid" in out and "2.0 KiB" in out
    value, out, _ = run(ip, capsys, "%kubelab models version iris production")
    assert value["version"] == 1 and "model iris version 1" in out
    value, out, _ = run(ip, capsys, "%kubelab models alias iris staging v2")
    assert fake.models.calls[-1] == ("set_alias", "iris", "staging", "v2")
    assert value["aliases"]["staging"] == 2 and "model iris: staging -> version 2" in out
    value, out, _ = run(ip, capsys, "%kubelab models unalias iris staging")
    assert "staging" not in value["aliases"] and "alias staging removed" in out
    _, out, err = run(ip, capsys, "%kubelab models unalias iris staging")
    assert assert_one_line(out, err) == "kubelab: model 'iris' has no alias 'staging'"

    run(ip, capsys, "%kubelab serve iris-svc --model iris")
    _, out, err = run(ip, capsys, "%kubelab models delete iris")
    assert assert_one_line(out, err) == ("kubelab: model 'iris' is served by iris-svc; "
                                         "delete those services first")
    value, out, err = run(ip, capsys, "%kubelab models show iris")
    assert value["served_by"] == [{"service": "iris-svc", "version": 1, "alias": None}]
    assert "iris-svc: v1" in out
    run(ip, capsys, "%kubelab serve delete iris-svc")
    value, out, err = run(ip, capsys, "%kubelab models delete iris")
    assert not err and value == {"name": "iris", "deleted": True, "message": "model 'iris' deleted"}
    _, out, err = run(ip, capsys, "%kubelab models show iris")
    assert assert_one_line(out, err) == "kubelab: model 'iris' not found"


def test_serve_deploys_and_prints_one_line_without_a_frontend(fake, ip, capsys):
    fake.models.register({"name": "iris", "aliases": ["staging"]})
    value, out, err = run(ip, capsys, "s = %kubelab serve iris-svc --model iris --version staging --group cpu "
                                      "--size small --gpus 0 --replicas 2")
    assert not err, err
    assert fake.serving.calls[-1] == ("deploy", {"name": "iris-svc", "model": "iris", "version": "staging",
                                                 "resource_group": "cpu", "size": "small", "gpus": 0,
                                                 "replicas": 2})
    assert out.strip() == ("kubelab: inference service 'iris-svc' deployed (Starting); "
                           "check it with %kubelab serve status iris-svc")
    s = ip.user_ns["s"]
    assert s["name"] == "iris-svc" and s["state"] == "Starting" and type(pickle.loads(pickle.dumps(s))) is dict
    value, out, err = run(ip, capsys, "%kubelab serve status iris-svc")
    assert value["state"] == "Ready" and "2/2 ready" in out and "%kubelab predict iris-svc DATA" in out
    value, out, _ = run(ip, capsys, "%kubelab serve list")
    assert [s["name"] for s in value] == ["iris-svc"] and "inference services (1)" in out and "v1" in out
    _, out, err = run(ip, capsys, "%kubelab serve status nope")
    assert assert_one_line(out, err) == "kubelab: inference service 'nope' not found"


def test_serve_update_rollback_and_delete(fake, ip, capsys):
    fake.models.register({"name": "iris"})
    fake.models.register({"name": "iris"})
    run(ip, capsys, "%kubelab serve iris-svc --model iris --version 1")
    value, out, err = run(ip, capsys, "%kubelab serve update iris-svc --version v2 --replicas 3")
    assert fake.serving.calls[-1] == ("update", "iris-svc", {"version": "v2", "replicas": 3})
    assert "kubelab: inference service 'iris-svc' updated (Ready)" in out
    value, out, err = run(ip, capsys, "%kubelab serve rollback iris-svc")
    assert fake.serving.calls[-2] == ("rollback", "iris-svc") and value["version"] == 1
    assert "rolled back to version 1" in out
    value, out, err = run(ip, capsys, "%kubelab serve delete iris-svc")
    assert value == {"name": "iris-svc", "deleted": True, "message": "inference service 'iris-svc' deleted"}
    assert "inference service 'iris-svc' deleted" in out
    _, out, err = run(ip, capsys, "%kubelab serve delete iris-svc")
    assert assert_one_line(out, err) == "kubelab: inference service 'iris-svc' not found"


def test_serving_a_service_named_like_a_command_needs_model_first(fake, ip, capsys):
    fake.models.register({"name": "iris"})
    _, out, err = run(ip, capsys, "%kubelab serve list --model iris")
    assert_one_line(out, err, "serve list: unrecognized arguments: --model iris")
    value, out, err = run(ip, capsys, "%kubelab serve --model iris iris-svc")
    assert not err and fake.serving.calls[-1] == ("deploy", {"name": "iris-svc", "model": "iris"})


@pytest.fixture
def served(fake, ip, capsys):
    fake.models.register({"name": "iris"})
    fake.serving.states = ["Ready"]
    run(ip, capsys, "%kubelab serve iris --model iris")
    return fake


@pytest.mark.parametrize("setup, expr, rows", [
    ("X = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]", "X", [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]),
    ("X = [(1, 2), (3, 4), (5, 6)]", "X[:2]", [[1, 2], [3, 4]]),
    ("", "[5.1, 3.5, 1.4, 0.2]", [[5.1, 3.5, 1.4, 0.2]]),
    ("import numpy as np; X = np.arange(12, dtype=np.float32).reshape(3, 4)", "X[:2]",
     [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]),
    ("import numpy as np; X = np.arange(12).reshape(3, 4)", "X[1]", [[4, 5, 6, 7]]),
    ("import numpy as np; X = [np.float64(1.5), np.int64(2)]", "X", [[1.5, 2]]),
    ("import pandas as pd; df = pd.DataFrame({'a': [1.0, 2.0, 3.0], 'b': [4, 5, 6]})", "df[['a', 'b']].head(2)",
     [[1.0, 4.0], [2.0, 5.0]]),
    ("import pandas as pd; df = pd.DataFrame({'a': [1.0, 2.0], 'b': [4, 5]})", "df.iloc[1]", [[2.0, 5.0]]),
    ("", "{'data': [[1, 2]]}", [[1, 2]]),
])
def test_predict_converts_data_to_rows(served, ip, capsys, setup, expr, rows):
    if setup:
        run(ip, capsys, setup)
    value, out, err = run(ip, capsys, f"out = %kubelab predict iris {expr}")
    assert not err, err
    call = served.serving.calls[-1]
    assert call == ("predict", "iris", {"data": rows}) and json.dumps(call[2])
    assert type(call[2]["data"][0][0]) in (int, float)
    out_value = ip.user_ns["out"]
    assert out_value == {"label": [0, 2], "probabilities": [[0.9, 0.05, 0.05], [0.1, 0.2, 0.7]]}
    assert type(pickle.loads(pickle.dumps(out_value))) is dict
    assert f"iris: model iris version 1, {len(rows)} row" in out_value._kl_bundle()[0]


def test_predict_sends_a_v2_request_as_is_and_shows_a_table(served, ip, capsys):
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 4], "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}
    ip.user_ns["req"] = body
    value, out, err = run(ip, capsys, "%kubelab predict iris req")
    assert not err and served.serving.calls[-1] == ("predict", "iris", body)
    text, markup = value._kl_bundle()
    assert text.splitlines()[0] == "iris: model iris version 1, 2 rows"
    assert text.splitlines()[1].split() == ["row", "label", "probabilities"]
    assert text.splitlines()[3].split(None, 2) == ["0", "0", "[0.9, 0.05, 0.05]"]
    assert "<table" in markup and "[0.1, 0.2, 0.7]" in markup


def test_predict_errors_from_the_service_are_one_line(served, ip, capsys):
    def refuse(name, body):
        raise Conflict(f"inference service {name!r} is not ready (Starting)")
    served.serving.predict = refuse
    _, out, err = run(ip, capsys, "%kubelab predict iris [[1, 2, 3, 4]]")
    assert assert_one_line(out, err) == "kubelab: inference service 'iris' is not ready (Starting)"


def test_shaped_outputs():
    resp = {"outputs": [{"name": "a", "shape": [2, 2, 2], "data": list(range(8))},
                        {"name": "b", "shape": [3], "data": [1, 2, 3]},
                        {"name": "c", "shape": [2, 2], "data": [1, 2, 3]},  # does not fit: left flat
                        {"name": "d", "shape": [2, -1], "data": [1, 2]}]}
    flat = {o["name"]: o["data"] for o in resp["outputs"]}
    assert M.shaped(flat, resp) == {"a": [[[0, 1], [2, 3]], [[4, 5], [6, 7]]], "b": [1, 2, 3], "c": [1, 2, 3],
                                    "d": [1, 2]}
    assert M.shaped(flat, None) == flat


def test_predict_help_and_serve_help(ip, capsys):
    _, out, err = run(ip, capsys, "%kubelab predict --help")
    assert out.startswith("usage: %kubelab predict NAME") and "DATA" in out and not err
    _, out, err = run(ip, capsys, "%kubelab serve --help")
    assert out.startswith("usage: %kubelab serve") and "--replicas" in out and not err
    _, out, err = run(ip, capsys, "%kubelab models register --help")
    assert "--metric" in out and "--lineage" in out and not err
    _, out, _ = run(ip, capsys, "%kubelab help")
    assert "%kubelab serve NAME --model M" in out and "%kubelab predict NAME DATA" in out


def test_service_watcher_polls_until_ready(fake):
    from kubelab.kernels.widgets import ServiceWatcher

    fake.models.register({"name": "iris"})
    fake.serving.states = ["Starting", "Starting", "Ready"]
    s = fake.serving.deploy({"name": "iris", "model": "iris"})
    w = ServiceWatcher("iris", lambda: fake.serving.status("iris"), interval=0.05, initial=s)
    assert "Starting" in w.status.value and "refreshing" in w.status.value and w.progress.value == 0
    w.start()
    w.join(10)
    assert w.done and w.view["state"] == "Ready"
    assert w.progress.value == w.progress.max == 1 and w.progress.bar_style == "success"
    assert "refreshing" not in w.status.value and "%kubelab predict iris DATA" in w.status.value
    assert "iris-abc" in w.details.value and w.status_line() == "service iris: Ready | 1/1 ready | model iris v1"


def test_service_watcher_waits_for_the_rollout_and_stops_when_failing(fake):
    from kubelab.kernels.widgets import ServiceWatcher

    views_seen = [
        {"name": "s", "state": "Ready", "version": 2, "replicas": 1, "ready_replicas": 1,
         "pods": [{"name": "s-old", "version": "1", "ready": True}, {"name": "s-new", "version": "2"}]},
        {"name": "s", "state": "Failing", "version": 2, "replicas": 1, "ready_replicas": 0,
         "problems": ["server failed: cannot load model.onnx"], "pods": [{"name": "s-new", "version": "2"}]},
    ]
    w = ServiceWatcher("s", lambda: views_seen.pop(0), interval=0.05)
    assert w.poll() is False  # Ready, but an old pod still serves version 1
    w.start()
    w.join(10)
    assert w.done and w.view["state"] == "Failing" and w.progress.bar_style == "danger"
    assert "cannot load model.onnx" in w.details.value and "cannot load model.onnx" in w.status_line()

    def gone():
        raise NotFound("inference service 's' not found")
    w = ServiceWatcher("s", gone, interval=0.05).start()
    w.join(5)
    assert w.done and "not found" in w.status.value and w.progress.bar_style == "danger"


def test_serve_shows_a_live_widget_in_a_kernel(fake, ip, capsys, monkeypatch):
    shown = []
    monkeypatch.setattr(views, "_rich_frontend", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.extend(objs))
    m = _magics(ip)
    m.poll_interval = 0.1
    fake.models.register({"name": "iris"})
    try:
        value, out, err = run(ip, capsys, "s = %kubelab serve iris --model iris")
        assert not err and out.strip() == "", (out, err)
        import ipywidgets

        assert len(shown) == 1 and isinstance(shown[0], ipywidgets.VBox)
        watcher = m.watchers[-1]
        watcher.join(10)
        assert watcher.done and watcher.view["state"] == "Ready"
        ip.user_ns["s"]._ipython_display_()  # shown again later: the same live widget
        assert shown[-1] is shown[0]
    finally:
        m.poll_interval = 2.0
