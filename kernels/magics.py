"""``%kubelab`` / ``%%kubelab``: schedules, training jobs and logs from a notebook.

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
%kubelab: schedules, training jobs and logs in your kubelab namespace.

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

  %%kubelab train NAME [--group G --size S --gpus N --workers K --image I --env K=V
                        --timeout S --retries N --output-model PATH --no-datasets --param k=v]
  <the cell's code runs as the training job's main.py>

--param values are JSON when they parse (0.5, true, [1, 2], "text"), else strings.
Each command returns the service's dict or list, e.g. runs = %kubelab schedule runs nightly.
`%kubelab <command> --help` explains one command.
"""

AREAS = {"schedule": "schedule", "schedules": "schedule", "job": "jobs", "jobs": "jobs", "dataset": "datasets",
         "datasets": "datasets"}
VERBS = {
    "schedule": ("create", "update", "list", "show", "suspend", "resume", "run", "runs", "delete", "preview"),
    "jobs": ("list", "show", "pending", "cancel", "delete", "submit"),
    "datasets": ("ls", "show", "preview", "snippet", "register", "registered", "unregister", "upload", "download",
                 "transfers"),
}
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


def _text(chunks: Iterator[bytes]) -> str:
    try:
        return b"".join(chunks).decode("utf-8", "replace")
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()


# -- how dataset results show (registered with the views' renderers) --------------------------------
D_FORMATS = ("csv", "parquet", "json", "jsonl", "other")


def _size(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def render_dataset_listing(d: dict, title: str) -> tuple[str, str]:
    rows = [{"name": f["name"], "size": None, "modified": None, "format": "folder"} for f in d.get("folders") or []]
    rows += [{"name": o["name"], "size": _size(o.get("size")), "modified": o.get("last_modified"),
              "format": o.get("format")} for o in d.get("objects") or []]
    head = title or (d.get("prefix") or "your datasets: roots")
    text, markup = views.table(rows, [("name", lambda r: r["name"]), ("size", lambda r: r["size"]),
                                      ("modified", lambda r: r["modified"]), ("format", lambda r: r["format"])],
                               head, "nothing here", status_col=None)
    if d.get("next_token"):
        more = f"more: %kubelab datasets ls {d.get('prefix')} --token {d['next_token']}"
        text += "\n" + more
        markup += f"<p>{html.escape(more)}</p>"
    return text, markup


def render_dataset_object(d: dict, title: str) -> tuple[str, str]:
    return views.kv([("uri", d.get("uri")), ("path", d.get("path")), ("size", _size(d.get("size"))),
                     ("format", d.get("format")), ("etag", d.get("etag")), ("version", d.get("version_id")),
                     ("content type", d.get("content_type")), ("modified", d.get("last_modified")),
                     ("writable", d.get("writable"))], title or d.get("key") or "object")


def render_dataset_preview(d: dict, title: str) -> tuple[str, str]:
    cols = [c["name"] for c in d.get("columns") or []]
    head = title or (f"{d.get('key')}: {d.get('row_count')} of {d.get('total_rows') or 'more'} rows, "
                     f"{len(cols)} columns (read {_size(d.get('bytes_read'))} of {_size(d.get('size'))} "
                     f"in {d.get('s3_requests')} requests)")
    rows = [[views.fmt(r.get(c)) for c in cols] for r in d.get("rows") or []]
    schema = [[c["name"], c["type"], "yes" if c.get("nullable") else "no"] for c in d.get("columns") or []]
    stats = d.get("stats") or {}
    stat_rows = [[c, views.fmt(s.get("count")), views.fmt(s.get("nulls")), views.fmt(s.get("min")),
                  views.fmt(s.get("max")), views.fmt(s.get("mean")), views.fmt(s.get("distinct"))]
                 for c, s in stats.items()]
    stat_head = ["column", "count", "nulls", "min", "max", "mean", "distinct"]
    text = "\n\n".join([head, views.text_table(rows, cols) if cols else "(no columns)",
                        "statistics of these rows", views.text_table(stat_rows, stat_head)])
    markup = (f"<b>{html.escape(head)}</b>" + (views.html_table(rows, cols) if cols else "")
              + "<details><summary>schema and statistics</summary>"
              + views.html_table(schema, ["column", "type", "nullable"])
              + views.html_table(stat_rows, stat_head) + "</details>")
    return text, markup


def render_dataset_snippet(d: dict, title: str) -> tuple[str, str]:
    head = title or f"use {d.get('key')} in a notebook"
    parts = [f"path: {d.get('path') or '- (not under a mount)'}", f"uri:  {d.get('uri')}"]
    blocks = [(k, v) for k, v in (d.get("code") or {}).items()]
    text = "\n".join([head, *parts] + [f"\n# {k}\n{v.rstrip()}" for k, v in blocks])
    markup = (f"<b>{html.escape(head)}</b><br>" + "<br>".join(html.escape(p) for p in parts)
              + "".join(f"<p>{html.escape(k)}:</p><pre>{html.escape(v)}</pre>" for k, v in blocks))
    return text, markup


def render_datasets(items: list, title: str) -> tuple[str, str]:
    return views.table(items, [
        ("name", lambda x: x.get("name")), ("shared", lambda x: x.get("shared")),
        ("format", lambda x: x.get("format")), ("location", lambda x: x.get("uri")),
        ("size", lambda x: _size(x.get("bytes")) if x.get("bytes") is not None else None),
        ("tags", lambda x: x.get("tags")), ("owner", lambda x: x.get("owner")),
        ("description", lambda x: (x.get("description") or "")[:80]),
    ], title or "registered datasets", "none yet (register one with %kubelab datasets register)", status_col=None)


def render_dataset(x: dict, title: str) -> tuple[str, str]:
    return views.kv([
        ("name", x.get("display_name") or x.get("name")), ("shared", x.get("shared")),
        ("description", x.get("description")), ("owner", x.get("owner")), ("tags", x.get("tags")),
        ("format", x.get("format")), ("location", x.get("uri")), ("etag", x.get("etag")),
        ("version", x.get("version_id")), ("objects", x.get("objects")),
        ("size", _size(x.get("bytes")) if x.get("bytes") is not None else None),
        ("schema", [f"{c['name']}: {c['type']}" for c in x.get("schema") or []]), ("created", x.get("created")),
    ], title or f"dataset {x.get('name')}", status_key="")


def render_transfer(t: dict, title: str) -> tuple[str, str]:
    return views.kv([
        ("status", t.get("status")), ("direction", t.get("direction")), ("path", t.get("path")),
        ("uri", t.get("uri")), ("progress", f"{t.get('percent', 0):g}% of {_size(t.get('bytes_total'))}"),
        ("multipart", t.get("multipart")), ("etag", t.get("etag")), ("error", t.get("error")),
        ("seconds", t.get("seconds")),
    ], title or f"transfer {t.get('id')}", status_key="")


def render_transfers(items: list, title: str) -> tuple[str, str]:
    return views.table(items, [
        ("id", lambda t: t.get("id")), ("status", lambda t: t.get("status")),
        ("direction", lambda t: t.get("direction")), ("path", lambda t: t.get("path")),
        ("uri", lambda t: t.get("uri")), ("progress", lambda t: f"{t.get('percent', 0):g}%"),
        ("error", lambda t: t.get("error")),
    ], title or "transfers", "none yet (%kubelab datasets upload / download)", status_col=None)


for _view, _render in (("dataset-listing", render_dataset_listing), ("dataset-object", render_dataset_object),
                       ("dataset-preview", render_dataset_preview), ("dataset-snippet", render_dataset_snippet),
                       ("datasets", render_datasets), ("dataset", render_dataset), ("transfer", render_transfer),
                       ("transfers", render_transfers)):
    views.RENDERERS.setdefault(_view, _render)


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
        Seconds between refreshes of the live status of a submitted job or a
        started run (and between checks while ``%kubelab logs -f`` waits for
        a pod to start).

        Example::

            c.KubelabMagics.poll_interval = 5
        """,
    )
    show_widgets = Bool(
        True,
        config=True,
        help="""
        Show a live ipywidgets status (status line, progress, latest log
        lines) for submitted jobs and started runs. When off, or outside a
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
            argv = shlex.split(line)
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
        if head in ("info", "logs"):
            return self._run(f"_{head}", head, rest)
        area = AREAS.get(head)
        if area is None:
            raise KubelabUsage(f"unknown command {head!r}: use info, schedule, jobs, datasets, logs or train "
                               "(%kubelab help lists them)")
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

    def _watch(self, res: Any, what: str, name: str, fetch: Callable[[], dict],
               logs: Callable[[int], str], done: str) -> Any:
        """Show the live status of a job or run (or print one line), and return ``res``."""
        if not self._widgets():
            print(f"kubelab: {what} {name!r} {done} ({res.get('status') or 'Pending'}); "
                  f"follow it with %kubelab logs {name} -f", flush=True)
            return res
        from IPython.display import display

        from .widgets import StatusWatcher

        self.watchers = [w for w in self.watchers if not w.done]
        watcher = StatusWatcher(what, name, fetch, logs, self.poll_interval, self.log_lines, initial=dict(res))
        self.watchers.append(watcher)
        display(watcher.widget)
        watcher.start()
        views.mark_shown(res)
        views.set_live(res, watcher.widget)
        return res

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
            req["tags"] = [t.strip() for item in a.tag for t in item.split(",") if t.strip()]
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
                               f"{_size(t['bytes_total'])} ({t['status']})")
            return update
        state = {"last": -1.0, "at": 0.0}

        def lines(t: dict) -> None:
            now = time.monotonic()
            if t["status"] in ("succeeded", "failed") or (t["percent"] != state["last"]
                                                          and now - state["at"] >= self.poll_interval):
                if t["status"] != "failed":
                    print(f"kubelab: {verb} {what}: {t['percent']:g}% of {_size(t['bytes_total'])}", flush=True)
                state["last"], state["at"] = t["percent"], now
        return lines

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
