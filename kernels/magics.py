"""``%kubelab`` / ``%%kubelab``: schedules, training jobs, datasets, models and serving from a notebook.

A thin shell over the service layer (``kubelab.server_extension.services``),
like the REST handlers: each command parses its options with IPython's
``magic_arguments``, calls one service method and returns the service's own
dict or list (displayed as a table). A user's mistake, a refused request or a
service error prints one line, ``kubelab: <message>``, to stderr and returns
None: never a traceback.
"""
from __future__ import annotations

import argparse
import codecs
import html
import importlib.util
import json
import os
import shlex
import sys
import time
from typing import Any, Callable, Iterator

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Float, Int, TraitError, validate
from traitlets.config import Configurable

from . import views

USAGE = """\
%kubelab: schedules, training jobs, datasets, models and inference services in your kubelab namespace.

  %kubelab info                                 who and where: user, namespace, resource groups
  %kubelab schedule create NAME --notebook PATH --cron "0 6 * * *" [--tz Europe/Berlin]
           [--param alpha=0.5 ...] [--group G --size S --gpus N] [--timeout 1h] [--retries N]
           [--webhook URL --notify failure,success] [--concurrency Forbid|Allow|Replace] [--suspend]
  %kubelab schedule update NAME [any create option]
  %kubelab schedule list | show NAME | suspend NAME | resume NAME | runs NAME | delete NAME
  %kubelab schedule run NAME [--param k=v ...]     run it now (with a live status)
  %kubelab schedule preview "*/15 * * * *" [--tz TZ] [-n 5]
  %kubelab jobs list | show NAME | pending NAME | cancel NAME | delete NAME
  %kubelab jobs submit NAME (--script P | --notebook P | --command CMD ...) [options] [-- ARGS ...]
  %kubelab logs RUN_OR_JOB [-f] [--worker N] [--tail N]
  %kubelab datasets ls [PREFIX] [--token T] [--page-size N] [-r]   browse users/<you>/ and datasets/, page by page
  %kubelab datasets show KEY | preview KEY [--rows N] | snippet KEY
  %kubelab datasets register NAME --uri s3://BUCKET/KEY [--description D] [--tag T ...] [--format F]
  %kubelab datasets registered [WORDS] [--tag T] [--mine | --shared] | unregister NAME
  %kubelab datasets upload LOCAL KEY [--overwrite] | download KEY LOCAL [--overwrite] | transfers
  %kubelab models list | show NAME | version NAME REF | alias NAME ALIAS REF | unalias NAME ALIAS | delete NAME
  %kubelab models register NAME (--path P | --uri s3://BUCKET/KEY) [--format F] [--description D]
           [--tag T ...] [--metric accuracy=0.97 ...] [--lineage dataset=iris ...] [--alias staging ...]
  %kubelab serve NAME --model M [--version REF] [--group G --size S --gpus N --replicas R]   (live status)
  %kubelab serve list | status NAME | update NAME [--version REF --replicas N ...] | rollback NAME | delete NAME
  %kubelab predict NAME DATA      DATA: a Python expression (rows, a numpy array, a DataFrame), e.g. X_test[:5]

  %%kubelab train NAME [--group G --size S --gpus N --workers K --image I --env K=V
                        --timeout S --retries N --output-model PATH --no-datasets --param k=v]
  <the cell's code runs as the training job's main.py>

--param values are JSON when they parse (0.5, true, [1, 2], "text"), else strings.
REF is a version (3 or v3) or an alias (production).
Each command returns the service's dict or list, e.g. runs = %kubelab schedule runs nightly;
%kubelab predict returns the model's outputs, e.g. out = %kubelab predict iris X_test[:5].
`%kubelab <command> --help` explains one command.
"""

AREAS = {"schedule": "schedule", "schedules": "schedule", "job": "jobs", "jobs": "jobs", "dataset": "datasets",
         "datasets": "datasets", "model": "models", "models": "models"}
VERBS = {
    "schedule": ("create", "update", "list", "show", "suspend", "resume", "run", "runs", "delete", "preview"),
    "jobs": ("list", "show", "pending", "cancel", "delete", "submit"),
    "datasets": ("ls", "show", "preview", "snippet", "register", "registered", "unregister", "upload", "download",
                 "transfers"),
    "models": ("list", "show", "version", "register", "alias", "unalias", "delete"),
}
SERVE_VERBS = ("list", "status", "update", "rollback", "delete")  # anything else: serve NAME --model M
FINISHED = views.FINISHED


class KubelabUsage(Exception):
    """A mistake in a command line (shown as one line)."""


# -- option values --------------------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_value(text: str) -> Any:
    """A ``--param`` value: JSON when it parses (numbers, true/false, null, lists, objects,
    quoted strings), else the text itself."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def parse_pairs(items: list[str] | None, option: str, json_values: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise KubelabUsage(f"{option} {item!r} must be KEY=VALUE, e.g. {option} "
                               + ("alpha=0.5" if json_values else "LR=0.1"))
        out[key] = parse_value(value) if json_values else value
    return out


def duration(text: str) -> int:
    """Seconds: ``3600``, ``90s``, ``30m``, ``2h`` or ``1d``."""
    t = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 3600, 90s, 30m, 2h, 1d)") from None


def _split_list(items: list[str]) -> list[str]:
    """Repeated options, each maybe ``a,b,c``."""
    return [t.strip() for item in items for t in item.split(",") if t.strip()]


def _text(chunks: Iterator[bytes]) -> str:
    try:
        return b"".join(chunks).decode("utf-8", "replace")
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()


# -- predict: DATA as the service wants it ----------------------------------------------------------
def plain(value: Any) -> Any:
    """JSON-ready: tuples as lists, numpy scalars as Python numbers."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if hasattr(value, "dtype") and hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # arrays, Series, tensors
        return plain(value.tolist())
    return value


def predict_body(value: Any) -> tuple[dict, int]:
    """The body of a prediction and how many rows it has, from what DATA evaluated to: rows
    (a list of lists, or one row), a numpy array, a pandas (or polars) DataFrame or Series,
    ``{"data": rows}``, or a V2 request ``{"inputs": [...]}`` (sent as is)."""
    if isinstance(value, dict):
        if "inputs" in value and "data" not in value:
            body = plain(value)
            shape = ((body.get("inputs") or [{}])[0] or {}).get("shape") if isinstance(body.get("inputs"), list) \
                else None
            return body, (shape[0] if isinstance(shape, list) and shape and isinstance(shape[0], int) else 0)
        if set(value) != {"data"}:
            raise KubelabUsage("predict: DATA is a dict; give rows (a list, numpy array or DataFrame), "
                               "{'data': rows} or a V2 request {'inputs': [...]}")
        value = value["data"]
    if hasattr(value, "to_numpy") and hasattr(value, "columns"):  # a DataFrame
        value = value.to_numpy()
    rows = plain(value)
    if isinstance(rows, (str, bytes)) or not isinstance(rows, list):
        raise KubelabUsage(f"predict: DATA must be rows: a list of lists, a numpy array or a pandas DataFrame "
                           f"(not {type(value).__name__})")
    if not rows:
        raise KubelabUsage("predict: DATA has no rows")
    if not isinstance(rows[0], list):
        rows = [rows]  # one row
    if any(not isinstance(r, list) for r in rows):
        raise KubelabUsage("predict: DATA mixes rows and single values; give a list of rows")
    if any(isinstance(x, (list, dict)) for r in rows for x in r):
        raise KubelabUsage("predict: DATA has more than two dimensions; send a V2 request "
                           "{'inputs': [{'name': ..., 'datatype': ..., 'shape': [...], 'data': [...]}]}")
    return {"data": rows}, len(rows)


def shaped(outputs: dict, response: Any) -> dict:
    """The outputs, each as nested lists of its V2 shape (``probabilities``: one list per row)."""
    out = dict(outputs)
    for o in (response or {}).get("outputs") or [] if isinstance(response, dict) else []:
        data, shape = o.get("data"), o.get("shape")
        if o.get("name") not in out or not isinstance(data, list) or not isinstance(shape, list) or len(shape) < 2 \
                or not all(isinstance(n, int) and n > 0 for n in shape):
            continue
        size = 1
        for n in shape:
            size *= n
        if size != len(data):
            continue
        for n in reversed(shape[1:]):
            data = [data[i:i + n] for i in range(0, len(data), n)]
        out[o["name"]] = data
    return out


D_FORMATS = ("csv", "parquet", "json", "jsonl", "other")
M_FORMATS = ("sklearn", "xgboost", "lightgbm", "onnx", "torchscript", "safetensors")  # kubelab.core.models.FORMATS


def training_options(func: Callable) -> Callable:
    """The options of ``jobs submit`` and ``%%kubelab train`` (fields of a training job)."""
    opts = [
        argument("--group", metavar="G", help="resource group (default: your default group)"),
        argument("--size", metavar="S", help="size within the group"),
        argument("--gpus", type=int, metavar="N", help="GPUs per worker"),
        argument("--workers", type=int, metavar="K", help="workers of a distributed (torchrun-style) job"),
        argument("--image", metavar="I", help="container image (default: your server's)"),
        argument("--env", action="append", metavar="K=V", help="environment variable (repeatable)"),
        argument("--timeout", type=duration, metavar="S", help="timeout: seconds or 30m, 2h, 1d"),
        argument("--retries", type=int, metavar="N", help="retries after a failure (default 0)"),
        argument("--output-model", metavar="PATH", help="where the job writes its model, in your home"),
        argument("--no-datasets", action="store_true", help="do not mount ~/datasets"),
        argument("--param", action="append", metavar="k=v", help="parameter (JSON value), repeatable"),
        argument("--queue", metavar="Q", help="Kueue LocalQueue"),
        argument("--kernel", metavar="K", help="kernel of a notebook job"),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def schedule_options(required: bool) -> Callable[[Callable], Callable]:
    def deco(func: Callable) -> Callable:
        opts = [
            argument("--notebook", required=required, metavar="PATH", help="the notebook, in your home"),
            argument("--cron", nargs="+", required=required, metavar="CRON",
                     help='cron expression, e.g. "0 6 * * *" (quote it)'),
            argument("--tz", metavar="TZ", help="IANA time zone, e.g. Europe/Berlin (default UTC)"),
            argument("--param", action="append", metavar="k=v", help="parameter (JSON value), repeatable"),
            argument("--group", metavar="G", help="resource group"),
            argument("--size", metavar="S", help="size within the group"),
            argument("--gpus", type=int, metavar="N", help="GPUs"),
            argument("--timeout", type=duration, metavar="S", help="run timeout: seconds or 30m, 2h"),
            argument("--retries", type=int, metavar="N", help="retries after a failed run"),
            argument("--webhook", metavar="URL", help="POSTed when a run finishes (see --notify)"),
            argument("--notify", metavar="WHEN", help="failure, success or failure,success (default failure)"),
            argument("--concurrency", choices=("Forbid", "Allow", "Replace"),
                     help="when the previous run still runs (default Forbid: skip)"),
            argument("--kernel", metavar="K", help="kernel that runs the notebook"),
            argument("--description", metavar="TEXT"),
        ]
        if required:
            opts.append(argument("--suspend", action="store_true", help="create it suspended"))
        for opt in reversed(opts):
            func = opt(func)
        return func
    return deco


@magics_class
class KubelabMagics(Magics, Configurable):
    """The ``%kubelab`` umbrella magic (see :data:`USAGE`)."""

    poll_interval = Float(
        2.0,
        config=True,
        help="""
        Seconds between refreshes of the live status of a submitted job, a
        started run or a deployed model (and between checks while
        ``%kubelab logs -f`` waits for a pod to start).

        Example::

            c.KubelabMagics.poll_interval = 5
        """,
    )
    show_widgets = Bool(
        True,
        config=True,
        help="""
        Show a live ipywidgets status (status line, progress, latest log
        lines) for submitted jobs and started runs, and for deployed models
        (state, ready replicas, problems, pods). When off, or outside a
        Jupyter kernel (a plain IPython shell), one line of status is
        printed instead.

        Example::

            c.KubelabMagics.show_widgets = False
        """,
    )
    log_lines = Int(
        20,
        config=True,
        help="""
        How many of the latest log lines the live status shows.

        Example::

            c.KubelabMagics.log_lines = 50
        """,
    )

    @validate("poll_interval")
    def _check_poll_interval(self, proposal):
        if proposal["value"] < 0.1:
            raise TraitError("poll_interval must be at least 0.1 seconds")
        return proposal["value"]

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self._services = None
        self.watchers: list = []
        if shell is not None:
            shell.events.register("post_execute", views.clear_shown)

    def close(self) -> None:
        """Stop the live widgets' threads (on ``%unload_ext``)."""
        for w in self.watchers:
            w.stop()
        self.watchers.clear()
        if self.shell is not None:
            try:
                self.shell.events.unregister("post_execute", views.clear_shown)
            except ValueError:
                pass
            if self in getattr(self.shell, "configurables", []):
                self.shell.configurables.remove(self)

    @property
    def services(self):
        """The service layer, created on first use with the shell's config (so
        ``c.ScheduleService.*`` and ``c.Workspace.*`` apply)."""
        if self._services is None:
            from kubelab.server_extension.services import Services

            self._services = Services.create(self.shell.config if self.shell is not None else None)
        return self._services

    # -- the magic --------------------------------------------------------------------------------
    @line_cell_magic
    def kubelab(self, line: str = "", cell: str | None = None) -> Any:
        from kubelab.server_extension.services.errors import ServiceError

        try:
            argv = self._argv(line)
        except ValueError as e:
            return self._fail(f"cannot read the command line: {e}")
        try:
            return self._dispatch(argv, cell)
        except UsageError as e:
            return self._fail(str(e))
        except KubelabUsage as e:
            return self._fail(str(e))
        except ServiceError as e:
            return self._fail(e.message)

    kubelab.__doc__ = USAGE

    def _fail(self, message: str) -> None:
        line = " ".join(str(message).split())
        print(f"kubelab: {line}", file=sys.stderr, flush=True)
        return None

    @staticmethod
    def _argv(line: str) -> list[str]:
        words = line.split(None, 2)
        if words and words[0] == "predict":  # predict NAME DATA: DATA is Python, kept as written
            return words
        return shlex.split(line)

    def _dispatch(self, argv: list[str], cell: str | None) -> Any:
        if not argv or argv[0] in ("help", "-h", "--help"):
            if cell is not None:
                raise KubelabUsage("%%kubelab takes 'train NAME [options]'; the cell is the job's code")
            print(USAGE)
            return None
        head, rest = argv[0], argv[1:]
        if cell is not None:
            if head != "train":
                raise KubelabUsage(f"%%kubelab takes 'train NAME [options]', not {head!r}; "
                                   "the other commands are line magics: %kubelab " + head)
            return self._run("_train", "train", rest, cell)
        if head == "train":
            raise KubelabUsage("train is a cell magic: put the code in a cell that starts with "
                               "%%kubelab train NAME [options]")
        if head in ("info", "logs", "predict"):
            return self._run(f"_{head}", head, rest)
        if head == "serve":
            return self._serve(rest)
        area = AREAS.get(head)
        if area is None:
            raise KubelabUsage(f"unknown command {head!r}: use info, schedule, jobs, datasets, models, serve, "
                               "predict, logs or train (%kubelab help lists them)")
        if not rest or rest[0] in ("-h", "--help", "help"):
            if rest:
                print(USAGE)
                return None
            raise KubelabUsage(f"{area} needs a command: {', '.join(VERBS[area])}")
        verb = rest[0]
        if verb not in VERBS[area]:
            raise KubelabUsage(f"unknown {area} command {verb!r}: use {', '.join(VERBS[area])}")
        return self._run(f"_{area}_{verb}", f"{area} {verb}", rest[1:])

    def _run(self, method: str, command: str, argv: list[str], cell: str | None = None) -> Any:
        handler = getattr(self, method)
        parser = handler.parser
        extra: list[str] = []
        if "--" in argv:
            i = argv.index("--")
            argv, extra = argv[:i], argv[i + 1:]
            if not getattr(handler, "takes_args", False):
                raise KubelabUsage(f"{command}: takes no arguments after '--'")
        scan = argv[:argv.index("--command")] if "--command" in argv else argv
        if "-h" in scan or "--help" in scan:
            print(parser.format_help().replace("::\n\n  %", "usage: %", 1))
            return None
        try:
            args = parser.parse_args(argv)
        except UsageError as e:
            raise KubelabUsage(f"{command}: {e} (see %kubelab {command} --help)") from None
        args.extra = extra
        return handler(args, cell) if cell is not None else handler(args)

    # -- helpers ----------------------------------------------------------------------------------
    def _home_path(self, path: str | None) -> str | None:
        """A path relative to the kernel's working directory, as the services want it (relative to home)."""
        if not path or os.path.isabs(path):
            return path
        from kubelab.server_extension.services.errors import ServiceError

        try:
            home = os.path.realpath(self.services.workspace.home)
        except ServiceError:
            return path
        full = os.path.normpath(os.path.join(os.path.realpath(os.getcwd()), path))
        if os.path.commonpath([full, home]) != home:
            return path
        return os.path.relpath(full, home)

    def _widgets(self) -> bool:
        if not self.show_widgets or not views._rich_frontend():
            return False
        return importlib.util.find_spec("ipywidgets") is not None

    def _live(self, res: Any, make: Callable[[], Any], line: str) -> Any:
        """Show a live status widget made by ``make`` (or print ``line`` without one), and return ``res``."""
        if not self._widgets():
            print(line, flush=True)
            return res
        from IPython.display import display

        self.watchers = [w for w in self.watchers if not w.done]
        watcher = make()
        self.watchers.append(watcher)
        display(watcher.widget)
        watcher.start()
        views.mark_shown(res)
        views.set_live(res, watcher.widget)
        return res

    def _watch(self, res: Any, what: str, name: str, fetch: Callable[[], dict],
               logs: Callable[[int], str], done: str) -> Any:
        """Show the live status of a job or run (or print one line), and return ``res``."""
        def make():
            from .widgets import StatusWatcher

            return StatusWatcher(what, name, fetch, logs, self.poll_interval, self.log_lines, initial=dict(res))
        return self._live(res, make, f"kubelab: {what} {name!r} {done} ({res.get('status') or 'Pending'}); "
                                     f"follow it with %kubelab logs {name} -f")

    def _watch_service(self, res: Any, done: str) -> Any:
        """Show an inference service's live status until it is Ready or Failing (or print one line)."""
        serving, name = self.services.serving, res["name"]

        def make():
            from .widgets import ServiceWatcher

            return ServiceWatcher(name, lambda: serving.status(name), self.poll_interval, initial=dict(res))
        return self._live(res, make, f"kubelab: inference service {name!r} {done} ({res.get('state') or 'Starting'}); "
                                     f"check it with %kubelab serve status {name}")

    # -- info -------------------------------------------------------------------------------------
    @magic_arguments(name="kubelab info")
    def _info(self, args) -> Any:
        """Your workspace: user, namespace, image, home and the resource groups you may use."""
        return views.result(self.services.info(), "info")

    # -- schedules --------------------------------------------------------------------------------
    def _schedule_request(self, a, create: bool) -> dict:
        req: dict[str, Any] = {}
        if create:
            req["name"] = a.name
        for field, value in (("notebook", self._home_path(a.notebook)),
                             ("schedule", " ".join(a.cron) if a.cron else None), ("timezone", a.tz),
                             ("resource_group", a.group), ("size", a.size), ("gpus", a.gpus),
                             ("timeout_seconds", a.timeout), ("retries", a.retries), ("webhook", a.webhook),
                             ("concurrency_policy", a.concurrency), ("kernel", a.kernel),
                             ("description", a.description)):
            if value is not None:
                req[field] = value
        if a.param:
            req["parameters"] = parse_pairs(a.param, "--param")
        if a.notify is not None:
            req["notify"] = [s.strip() for s in a.notify.split(",") if s.strip()]
        if create and a.suspend:
            req["suspend"] = True
        return req

    @magic_arguments(name="kubelab schedule create")
    @argument("name", help="schedule name (lowercase letters, digits, '-')")
    @schedule_options(required=True)
    def _schedule_create(self, a) -> Any:
        """Run a notebook on a cron schedule (a CronJob that outlives your server)."""
        s = self.services.schedules.create(self._schedule_request(a, create=True))
        return views.result(s, "schedule", f"schedule {s['name']} created")

    @magic_arguments(name="kubelab schedule update")
    @argument("name")
    @schedule_options(required=False)
    def _schedule_update(self, a) -> Any:
        """Change a schedule; options not given stay as they are (--param replaces all parameters)."""
        changes = self._schedule_request(a, create=False)
        if not changes:
            raise KubelabUsage("schedule update: give at least one option to change")
        return views.result(self.services.schedules.update(a.name, changes), "schedule",
                            f"schedule {a.name} updated")

    @magic_arguments(name="kubelab schedule list")
    def _schedule_list(self, a) -> Any:
        """Your schedules."""
        return views.result(self.services.schedules.list(), "schedules")

    @magic_arguments(name="kubelab schedule show")
    @argument("name")
    def _schedule_show(self, a) -> Any:
        """One schedule: its settings, next and last runs."""
        return views.result(self.services.schedules.get(a.name), "schedule")

    @magic_arguments(name="kubelab schedule suspend")
    @argument("name")
    def _schedule_suspend(self, a) -> Any:
        """Stop starting runs (a running one goes on)."""
        return views.result(self.services.schedules.set_suspended(a.name, True), "schedule",
                            f"schedule {a.name} suspended")

    @magic_arguments(name="kubelab schedule resume")
    @argument("name")
    def _schedule_resume(self, a) -> Any:
        """Start runs again."""
        return views.result(self.services.schedules.set_suspended(a.name, False), "schedule",
                            f"schedule {a.name} resumed")

    @magic_arguments(name="kubelab schedule run")
    @argument("name")
    @argument("--param", action="append", metavar="k=v", help="parameter for this run only (JSON value)")
    def _schedule_run(self, a) -> Any:
        """Run a schedule now, with a live status; --param overrides its parameters for this run."""
        params = parse_pairs(a.param, "--param") or None
        sch = self.services.schedules
        run = sch.run_now(a.name, params)
        rid, name = run["id"], a.name
        res = views.result(run, "run", f"run {rid} of schedule {name}")
        return self._watch(res, "run", rid, lambda: sch.run(name, rid),
                           lambda n: _text(sch.run_logs(name, rid, False, n)), f"of schedule {name!r} started")

    @magic_arguments(name="kubelab schedule runs")
    @argument("name")
    def _schedule_runs(self, a) -> Any:
        """A schedule's runs, newest first."""
        return views.result(self.services.schedules.runs(a.name), "runs", f"runs of {a.name}")

    @magic_arguments(name="kubelab schedule delete")
    @argument("name")
    def _schedule_delete(self, a) -> Any:
        """Delete a schedule and its runs (their outputs stay in ~/.kubelab/runs)."""
        self.services.schedules.delete(a.name)
        return views.result({"name": a.name, "deleted": True, "message": f"schedule {a.name!r} deleted"},
                            "message")

    @magic_arguments(name="kubelab schedule preview")
    @argument("cron", nargs="+", help='cron expression, e.g. "*/15 * * * *"')
    @argument("--tz", metavar="TZ", help="IANA time zone (default UTC)")
    @argument("-n", "--count", type=int, default=5, help="how many times (default 5)")
    def _schedule_preview(self, a) -> Any:
        """The next times a cron expression fires (checks it too)."""
        if not 1 <= a.count <= 50:
            raise KubelabUsage("schedule preview: -n must be between 1 and 50")
        return views.result(self.services.schedules.preview(" ".join(a.cron), a.tz, a.count), "preview")

    # -- training jobs ----------------------------------------------------------------------------
    def _training_request(self, a) -> dict:
        req: dict[str, Any] = {"name": a.name}
        for field, value in (("resource_group", a.group), ("size", a.size), ("gpus", a.gpus),
                             ("workers", a.workers), ("image", a.image), ("timeout_seconds", a.timeout),
                             ("retries", a.retries), ("output_model", self._home_path(a.output_model)),
                             ("queue", a.queue), ("kernel", a.kernel)):
            if value is not None:
                req[field] = value
        if a.env:
            req["env"] = parse_pairs(a.env, "--env", json_values=False)
        if a.param:
            req["parameters"] = parse_pairs(a.param, "--param")
        if a.no_datasets:
            req["datasets"] = False
        return req

    def _submit(self, req: dict) -> Any:
        jobs, name = self.services.jobs, req["name"]
        job = jobs.submit(req)
        res = views.result(job, "job", f"job {name} submitted")
        return self._watch(res, "job", name, lambda: jobs.get(name),
                           lambda n: _text(jobs.logs(name, 0, False, n)), "submitted")

    @magic_arguments(name="kubelab jobs submit")
    @argument("name", help="job name (lowercase letters, digits, '-')")
    @argument("--script", metavar="PATH", help="a Python script in your home")
    @argument("--notebook", metavar="PATH", help="a notebook in your home (run with papermill)")
    @argument("--command", nargs=argparse.REMAINDER, metavar="CMD",
              help="a command and its arguments (the rest of the line)")
    @training_options
    def _jobs_submit(self, a) -> Any:
        """Submit a training job. Arguments for the script or command go after '--'."""
        sources = [s for s in ("script", "notebook", "command") if getattr(a, s)]
        if len(sources) != 1:
            raise KubelabUsage("jobs submit: give exactly one of --script, --notebook or --command")
        req = self._training_request(a)
        if a.script:
            req["script"] = self._home_path(a.script)
        elif a.notebook:
            req["notebook"] = self._home_path(a.notebook)
        else:
            cmd = list(a.command)
            if len(cmd) == 1 and " " in cmd[0]:
                cmd = shlex.split(cmd[0])
            req["command"] = cmd
        if a.extra:
            req["args"] = list(a.extra)
        return self._submit(req)

    _jobs_submit.takes_args = True

    @magic_arguments(name="kubelab train")
    @argument("name", help="job name (lowercase letters, digits, '-')")
    @training_options
    def _train(self, a, cell: str) -> Any:
        """Submit the cell's code as a training job (its main.py) and show its live status."""
        if not cell.strip():
            raise KubelabUsage("train: the cell is empty; put the training code under %%kubelab train NAME")
        req = self._training_request(a)
        req["code"] = cell
        if a.extra:
            req["args"] = list(a.extra)
        return self._submit(req)

    _train.takes_args = True

    @magic_arguments(name="kubelab jobs list")
    def _jobs_list(self, a) -> Any:
        """Your training jobs, newest first."""
        return views.result(self.services.jobs.list(), "jobs")

    @magic_arguments(name="kubelab jobs show")
    @argument("name")
    def _jobs_show(self, a) -> Any:
        """One job: status, pods, recent events."""
        return views.result(self.services.jobs.get(a.name), "job")

    @magic_arguments(name="kubelab jobs pending")
    @argument("name")
    def _jobs_pending(self, a) -> Any:
        """Why a job is not running yet, in the cluster's own words."""
        return views.result(self.services.jobs.why_pending(a.name), "pending")

    @magic_arguments(name="kubelab jobs cancel")
    @argument("name")
    def _jobs_cancel(self, a) -> Any:
        """Stop a job's pods; its record stays (status Cancelled)."""
        return views.result(self.services.jobs.cancel(a.name), "job", f"job {a.name} cancelled")

    @magic_arguments(name="kubelab jobs delete")
    @argument("name")
    def _jobs_delete(self, a) -> Any:
        """Delete a job, its pods and its record."""
        self.services.jobs.delete(a.name)
        return views.result({"name": a.name, "deleted": True, "message": f"job {a.name!r} deleted"}, "message")

    # -- datasets ---------------------------------------------------------------------------------
    @magic_arguments(name="kubelab datasets ls")
    @argument("prefix", nargs="?", default="", metavar="PREFIX",
              help="under users/<you>/ or datasets/ (or an s3:// URL); default: those two roots")
    @argument("--token", metavar="T", help="the next_token of the previous page")
    @argument("--page-size", type=int, metavar="N", help="entries per page (default 100)")
    @argument("-r", "--recursive", action="store_true", help="every object under the prefix, no folders")
    def _datasets_ls(self, a) -> Any:
        """One page of the folders and objects under a prefix; --token gives the next page."""
        page = self.services.datasets.browse(a.prefix, a.token, a.page_size, a.recursive)
        return views.result(page, "dataset-listing")

    @magic_arguments(name="kubelab datasets show")
    @argument("key", metavar="KEY", help="an object's key (or s3:// URL)")
    def _datasets_show(self, a) -> Any:
        """One object: size, ETag, where it is mounted, its s3:// URL."""
        return views.result(self.services.datasets.object(a.key), "dataset-object")

    @magic_arguments(name="kubelab datasets preview")
    @argument("key", metavar="KEY", help="a CSV, Parquet or JSON object's key (or s3:// URL)")
    @argument("--rows", type=int, metavar="N", help="how many rows (default 20)")
    def _datasets_preview(self, a) -> Any:
        """Schema, first rows and column statistics, read from byte ranges of the object."""
        return views.result(self.services.datasets.preview(a.key, a.rows), "dataset-preview")

    @magic_arguments(name="kubelab datasets snippet")
    @argument("key", metavar="KEY", help="an object's key, or a folder's (ending in /)")
    def _datasets_snippet(self, a) -> Any:
        """How to read it in a notebook: its path under ~ or ~/datasets, its s3:// URL, and code."""
        return views.result(self.services.datasets.snippet(a.key), "dataset-snippet")

    @magic_arguments(name="kubelab datasets register")
    @argument("name", help="dataset name (lowercase letters, digits, '-')")
    @argument("--uri", required=True, metavar="URI", help="s3://<bucket>/<key> (a folder ends in /)")
    @argument("--description", metavar="TEXT")
    @argument("--display-name", metavar="TEXT")
    @argument("--owner", metavar="WHO", help="default: you")
    @argument("--tag", action="append", metavar="TAG", help="a tag (repeatable, or a,b,c)")
    @argument("--format", choices=D_FORMATS, help="default: from the extension")
    @argument("--etag", metavar="E", help="the ETag the object must have (pins its version)")
    def _datasets_register(self, a) -> Any:
        """Register a dataset (a Dataset object in your namespace), its version pinned by ETag."""
        req: dict[str, Any] = {"name": a.name, "uri": a.uri}
        for field, value in (("description", a.description), ("display_name", a.display_name),
                             ("owner", a.owner), ("format", a.format), ("etag", a.etag)):
            if value is not None:
                req[field] = value
        if a.tag:
            req["tags"] = _split_list(a.tag)
        d = self.services.datasets.register(req)
        return views.result(d, "dataset", f"dataset {d['name']} registered")

    @magic_arguments(name="kubelab datasets registered")
    @argument("query", nargs="*", metavar="WORDS", help="words to search for in the metadata")
    @argument("--tag", metavar="TAG", help="only datasets with this tag")
    @argument("--mine", action="store_true", help="only yours")
    @argument("--shared", action="store_true", help="only the shared ones")
    def _datasets_registered(self, a) -> Any:
        """Your registered datasets and the shared ones (searched by words and a tag)."""
        if a.mine and a.shared:
            raise KubelabUsage("datasets registered: give --mine or --shared, not both")
        scope = "mine" if a.mine else "shared" if a.shared else "all"
        out = self.services.datasets.registered(" ".join(a.query) or None, a.tag, scope)
        for warning in out.get("warnings") or []:
            print(f"kubelab: {warning}", file=sys.stderr, flush=True)
        return views.result(out["datasets"], "datasets")

    @magic_arguments(name="kubelab datasets unregister")
    @argument("name")
    def _datasets_unregister(self, a) -> Any:
        """Delete your record of a dataset (the data stays)."""
        self.services.datasets.unregister(a.name)
        return views.result({"name": a.name, "deleted": True, "message": f"dataset {a.name!r} unregistered"},
                            "message")

    @magic_arguments(name="kubelab datasets upload")
    @argument("local", metavar="LOCAL", help="a file in your home (relative to this notebook's folder)")
    @argument("key", metavar="KEY", help="where in S3: users/<you>/... (ending in / keeps the file's name)")
    @argument("--overwrite", action="store_true", help="replace an existing object")
    def _datasets_upload(self, a) -> Any:
        """Upload a home file to S3 (multipart for large files), showing its progress."""
        return self._transfer({"direction": "upload", "path": self._home_path(a.local), "key": a.key,
                               "overwrite": a.overwrite})

    @magic_arguments(name="kubelab datasets download")
    @argument("key", metavar="KEY", help="an object under users/<you>/ or datasets/ (or an s3:// URL)")
    @argument("local", metavar="LOCAL", help="where in your home (a folder keeps the object's name)")
    @argument("--overwrite", action="store_true", help="replace an existing file")
    def _datasets_download(self, a) -> Any:
        """Download an object into your home, showing its progress."""
        local = self._home_path(a.local)
        if local in (".", "./"):
            local = a.key.rstrip("/").rsplit("/", 1)[-1]
        elif a.local.endswith("/") and local and not local.endswith("/"):
            local += "/"
        return self._transfer({"direction": "download", "path": local, "key": a.key, "overwrite": a.overwrite})

    @magic_arguments(name="kubelab datasets transfers")
    def _datasets_transfers(self, a) -> Any:
        """This kernel's recent uploads and downloads."""
        return views.result(self.services.datasets.transfers(), "transfers")

    def _transfer(self, req: dict) -> Any:
        """Start a transfer and wait for it, with a progress bar (or lines); its final state."""
        from kubelab.server_extension.services.errors import ServiceError

        ds = self.services.datasets
        t = ds.start_transfer(req)
        verb = "upload" if t["direction"] == "upload" else "download"
        what = f"{t['path']} -> {t['uri']}" if verb == "upload" else f"{t['uri']} -> {t['path']}"
        show = self._transfer_progress(verb, what)
        try:
            t = ds.wait_transfer(t["id"], None, max(0.1, min(0.5, self.poll_interval)), show)
        except KeyboardInterrupt:
            print(f"\nkubelab: stopped waiting; the {verb} goes on (%kubelab datasets transfers)", flush=True)
            return views.result(ds.transfer(t["id"]), "transfer")
        if t["status"] != "succeeded":
            raise ServiceError(f"{verb} of {what} failed: {t.get('error') or 'unknown error'}")
        return views.result(t, "transfer", f"{verb}ed {what}")

    def _transfer_progress(self, verb: str, what: str) -> Callable[[dict], None]:
        if self._widgets():
            import ipywidgets as w
            from IPython.display import display

            bar = w.FloatProgress(value=0, min=0, max=100, bar_style="info",
                                  layout=w.Layout(width="16em", margin="2px 10px 2px 0"))
            label = w.HTML()
            display(w.HBox([bar, label]))

            def update(t: dict) -> None:
                bar.value = t["percent"]
                if t["status"] in ("succeeded", "failed"):
                    bar.bar_style = "success" if t["status"] == "succeeded" else "danger"
                label.value = (f"{verb} {html.escape(what)}: {t['percent']:g}% of "
                               f"{views.human_size(t['bytes_total'])} ({t['status']})")
            return update
        state = {"last": -1.0, "at": 0.0}

        def lines(t: dict) -> None:
            now = time.monotonic()
            if t["status"] in ("succeeded", "failed") or (t["percent"] != state["last"]
                                                          and now - state["at"] >= self.poll_interval):
                if t["status"] != "failed":
                    print(f"kubelab: {verb} {what}: {t['percent']:g}% of {views.human_size(t['bytes_total'])}",
                          flush=True)
                state["last"], state["at"] = t["percent"], now
        return lines

    # -- models -----------------------------------------------------------------------------------
    @magic_arguments(name="kubelab models list")
    def _models_list(self, a) -> Any:
        """Your registered models: latest version, aliases, tags."""
        return views.result(self.services.models.list(), "models")

    @magic_arguments(name="kubelab models show")
    @argument("name")
    def _models_show(self, a) -> Any:
        """One model: its versions (format, validation, metrics), aliases, and which services serve it."""
        return views.result(self.services.serving.model(a.name), "model")

    @magic_arguments(name="kubelab models version")
    @argument("name")
    @argument("ref", metavar="REF", help="a version (3 or v3) or an alias (production)")
    def _models_version(self, a) -> Any:
        """One version: format, validation verdict, signature, metrics, lineage, artifact."""
        return views.result(self.services.models.version(a.name, a.ref), "model-version")

    @magic_arguments(name="kubelab models register")
    @argument("name", help="model name (lowercase letters, digits, '-')")
    @argument("--path", metavar="P", help="a model file or folder in your home (relative to this notebook's folder)")
    @argument("--uri", metavar="S3URI", help="s3://BUCKET/KEY of a model file, or a folder ending in /")
    @argument("--format", choices=M_FORMATS, help="default: detected from the files")
    @argument("--description", metavar="TEXT")
    @argument("--tag", action="append", metavar="TAG", help="a tag (repeatable, or a,b,c)")
    @argument("--metric", action="append", metavar="k=v", help="a number, e.g. accuracy=0.97 (repeatable)")
    @argument("--lineage", action="append", metavar="k=v",
              help="where it comes from: dataset=, job=, notebook= or environment= (repeatable)")
    @argument("--alias", action="append", metavar="A", help="point this alias at the new version (repeatable)")
    def _models_register(self, a) -> Any:
        """Register a new version of a model (validated in a sandbox first; nothing is stored if it is invalid)."""
        if bool(a.path) == bool(a.uri):
            raise KubelabUsage("models register: give exactly one of --path (a file or folder in your home) "
                               "or --uri (s3://...)")
        req: dict[str, Any] = {"name": a.name}
        for field, value in (("path", self._home_path(a.path)), ("uri", a.uri), ("format", a.format),
                             ("description", a.description)):
            if value is not None:
                req[field] = value
        if a.tag:
            req["tags"] = _split_list(a.tag)
        if a.metric:
            metrics = parse_pairs(a.metric, "--metric")
            for item in a.metric:
                value = metrics[item.partition("=")[0].strip()]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise KubelabUsage(f"--metric {item!r} must be NAME=NUMBER, e.g. --metric accuracy=0.97")
            req["metrics"] = metrics
        if a.lineage:
            req["lineage"] = parse_pairs(a.lineage, "--lineage", json_values=False)
        if a.alias:
            req["aliases"] = _split_list(a.alias)
        v = self.services.models.register(req)
        aliases = f" ({', '.join(req['aliases'])})" if req.get("aliases") else ""
        return views.result(v, "model-version", f"model {v['model']} version {v['version']} registered{aliases}")

    @magic_arguments(name="kubelab models alias")
    @argument("name")
    @argument("alias", metavar="ALIAS", help="e.g. production or staging")
    @argument("ref", metavar="REF", help="a version (3 or v3) or another alias")
    def _models_alias(self, a) -> Any:
        """Point an alias at a version (services deployed by alias keep the version they run until updated)."""
        m = self.services.models.set_alias(a.name, a.alias, a.ref)
        target = (m.get("aliases") or {}).get(a.alias)
        return views.result(m, "model", f"model {a.name}: {a.alias} -> version {target}")

    @magic_arguments(name="kubelab models unalias")
    @argument("name")
    @argument("alias", metavar="ALIAS")
    def _models_unalias(self, a) -> Any:
        """Remove an alias (the version stays)."""
        return views.result(self.services.models.remove_alias(a.name, a.alias), "model",
                            f"model {a.name}: alias {a.alias} removed")

    @magic_arguments(name="kubelab models delete")
    @argument("name")
    def _models_delete(self, a) -> Any:
        """Delete a model, all its versions and their artifacts (refused while a service serves it)."""
        self.services.serving.delete_model(a.name)
        return views.result({"name": a.name, "deleted": True, "message": f"model {a.name!r} deleted"}, "message")

    # -- serving ----------------------------------------------------------------------------------
    def _serve(self, rest: list[str]) -> Any:
        if not rest:
            raise KubelabUsage(f"serve needs a command: NAME --model M (deploy), {', '.join(SERVE_VERBS)}")
        verb = rest[0]
        if verb in SERVE_VERBS:
            return self._run(f"_serve_{verb}", f"serve {verb}", rest[1:])
        if verb == "help":
            print(USAGE)
            return None
        if not verb.startswith("-") and not any(x == "--model" or x.startswith("--model=") or x in ("-h", "--help")
                                                for x in rest):
            raise KubelabUsage(f"unknown serve command {verb!r}: deploy with %kubelab serve NAME --model M, "
                               f"or use {', '.join(SERVE_VERBS)}")
        return self._run("_serve_deploy", "serve", rest)

    def _serving_request(self, a) -> dict:
        req: dict[str, Any] = {}
        for field, value in (("model", a.model), ("version", a.version), ("resource_group", a.group),
                             ("size", a.size), ("gpus", a.gpus), ("replicas", a.replicas)):
            if value is not None:
                req[field] = value
        return req

    @magic_arguments(name="kubelab serve")
    @argument("name", help="the inference service's name (lowercase letters, digits, '-')")
    @argument("--model", required=True, metavar="M", help="a registered model")
    @argument("--version", metavar="REF", help="a version (3 or v3) or an alias (default: the latest version)")
    @argument("--group", metavar="G", help="resource group (default: your default group)")
    @argument("--size", metavar="S", help="size within the group")
    @argument("--gpus", type=int, metavar="N", help="GPUs per replica")
    @argument("--replicas", type=int, metavar="R", help="model servers (default 1)")
    def _serve_deploy(self, a) -> Any:
        """Deploy a model version as an inference service, with a live status until it is Ready."""
        s = self.services.serving.deploy({"name": a.name, **self._serving_request(a)})
        version = f"version {s.get('version')}" + (f" ({s['alias']})" if s.get("alias") else "")
        return self._watch_service(views.result(s, "service", f"inference service {a.name}: model {s.get('model')} "
                                                              f"{version}"), "deployed")

    @magic_arguments(name="kubelab serve list")
    def _serve_list(self, a) -> Any:
        """Your inference services: model, version, ready replicas, URL."""
        return views.result(self.services.serving.list(), "services")

    @magic_arguments(name="kubelab serve status")
    @argument("name")
    def _serve_status(self, a) -> Any:
        """One inference service: state, and when it is not serving, why (fetch and load errors, events)."""
        return views.result(self.services.serving.status(a.name), "service")

    @magic_arguments(name="kubelab serve update")
    @argument("name")
    @argument("--model", metavar="M", help="serve another model")
    @argument("--version", metavar="REF", help="switch to this version or alias (a rolling update)")
    @argument("--group", metavar="G", help="move to this resource group")
    @argument("--size", metavar="S")
    @argument("--gpus", type=int, metavar="N")
    @argument("--replicas", type=int, metavar="R", help="scale (0 stops it)")
    def _serve_update(self, a) -> Any:
        """Switch version, scale or move: a rolling update that loses no requests; live status until done."""
        changes = self._serving_request(a)
        if not changes:
            raise KubelabUsage("serve update: give at least one option to change (--version, --replicas, ...)")
        return self._watch_service(views.result(self.services.serving.update(a.name, changes), "service",
                                                f"inference service {a.name} updated"), "updated")

    @magic_arguments(name="kubelab serve rollback")
    @argument("name")
    def _serve_rollback(self, a) -> Any:
        """Go back to the version served before the last switch (a rolling update)."""
        s = self.services.serving.rollback(a.name)
        return self._watch_service(views.result(s, "service", f"inference service {a.name} rolled back to "
                                                              f"version {s.get('version')}"),
                                   f"rolled back to version {s.get('version')}")

    @magic_arguments(name="kubelab serve delete")
    @argument("name")
    def _serve_delete(self, a) -> Any:
        """Delete an inference service (the model stays registered)."""
        self.services.serving.delete(a.name)
        return views.result({"name": a.name, "deleted": True, "message": f"inference service {a.name!r} deleted"},
                            "message")

    @magic_arguments(name="kubelab predict")
    @argument("name", metavar="NAME", help="an inference service")
    @argument("data", nargs=argparse.REMAINDER, metavar="DATA",
              help="a Python expression: a list of rows, a numpy array or a pandas DataFrame (e.g. X_test[:5]), "
                   "or a V2 request {'inputs': [...]}")
    def _predict(self, a) -> Any:
        """Predict with an inference service; returns the model's outputs (one entry per row)."""
        expr = " ".join(a.data).strip()
        if not expr:
            raise KubelabUsage(f"predict: give DATA, a Python expression for the rows, "
                               f"e.g. %kubelab predict {a.name} X_test[:5]")
        try:
            value = self.shell.ev(expr)
        except Exception as e:  # noqa: BLE001 - the user's expression: one line, no traceback
            raise KubelabUsage(f"predict: cannot evaluate {expr}: {e.__class__.__name__}: {e}") from None
        body, rows = predict_body(value)
        out = self.services.serving.predict(a.name, body)
        outputs = shaped(out.get("outputs") or {}, out.get("response"))
        title = (f"{out.get('service')}: model {out.get('model')} version {out.get('version')}, "
                 f"{rows} row{'s' if rows != 1 else ''}")
        return views.result(outputs, "predictions", title, meta={"rows": rows})

    # -- logs -------------------------------------------------------------------------------------
    def _resolve(self, name: str) -> tuple[str, str | None]:
        """``("run", schedule)`` for a schedule's run, ``("job", None)`` for a training job."""
        from kubelab.core import workloads as W
        from kubelab.server_extension.services import NotFound

        ws = self.services.workspace
        job = ws.call(ws.kube.get, "batch/v1", "Job", name, what=name)
        labels = ((job or {}).get("metadata") or {}).get("labels") or {}
        if labels.get(W.SCHEDULE_LABEL):
            return "run", labels[W.SCHEDULE_LABEL]
        if labels.get(W.JOB_LABEL) == name:
            return "job", None
        if job is None:
            try:  # a PyTorchJob, when the training operator runs
                self.services.jobs.get(name)
                return "job", None
            except NotFound:
                pass
        raise NotFound(f"no schedule run or training job named {name!r} "
                       "(see %kubelab schedule runs NAME or %kubelab jobs list)")

    @magic_arguments(name="kubelab logs")
    @argument("name", metavar="RUN_OR_JOB", help="a schedule's run id (e.g. nightly-1795441288) or a job name")
    @argument("-f", "--follow", action="store_true", help="stream new lines until the run or job ends")
    @argument("--worker", type=int, default=0, metavar="N", help="worker of a distributed job (default 0)")
    @argument("--tail", type=int, metavar="N", help="only the last N lines")
    def _logs(self, a) -> None:
        """Print the log of a schedule's run or a training job (its latest attempt)."""
        from kubelab.server_extension.services import Conflict

        kind, schedule = self._resolve(a.name)
        name = a.name
        if kind == "run":
            if a.worker:
                raise KubelabUsage("logs: --worker is for training jobs, not schedule runs")
            sch = self.services.schedules
            fetch = lambda: sch.run(schedule, name)  # noqa: E731
            open_logs = lambda follow: sch.run_logs(schedule, name, follow, a.tail)  # noqa: E731
        else:
            jobs = self.services.jobs
            fetch = lambda: jobs.get(name)  # noqa: E731
            open_logs = lambda follow: jobs.logs(name, a.worker, follow, a.tail)  # noqa: E731
        if not a.follow:
            self._print_stream(open_logs(False))
            return None
        try:
            announced = False
            while True:
                try:
                    chunks = open_logs(True)
                    break
                except Conflict as e:
                    if fetch().get("status") in FINISHED:
                        raise
                    if not announced:
                        print(f"kubelab: waiting for {kind} {name} to start: {e.message}", flush=True)
                        announced = True
                    time.sleep(self.poll_interval)
            self._print_stream(chunks)
            deadline = time.monotonic() + 30
            view = fetch()
            while view.get("status") not in FINISHED and time.monotonic() < deadline:
                time.sleep(min(1.0, self.poll_interval))
                view = fetch()
        except KeyboardInterrupt:
            print("\nkubelab: stopped following (the run goes on)", flush=True)
            return None
        msg = f" ({view['message']})" if view.get("message") else ""
        print(f"kubelab: {kind} {name}: {view.get('status')}{msg}", flush=True)
        return None

    @staticmethod
    def _print_stream(chunks: Iterator[bytes]) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        last = "\n"
        try:
            for chunk in chunks:
                text = decoder.decode(chunk)
                if text:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                    last = text
            text = decoder.decode(b"", final=True)
            if text:
                sys.stdout.write(text)
                last = text
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        if not last.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.flush()
