"""How ``%kubelab`` results show: small tables as text and HTML (no widgets here).

A command returns the service's own dict or list, wrapped in :class:`ResultDict`
or :class:`ResultList`: still a ``dict``/``list`` (index it, ``json.dumps`` it,
compare it), that IPython displays as a table (HTML in a notebook, text in a
terminal). Copies and pickles are plain dicts and lists.
"""
from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence

# Objects already shown by the command that returned them, in the cell being
# run: their automatic ``Out[]`` display is skipped (no second copy of a live
# widget). Cleared after each execution (see KubelabMagics).
_shown_this_cell: list[Any] = []


def mark_shown(obj: Any) -> None:
    _shown_this_cell.append(obj)


def clear_shown() -> None:
    _shown_this_cell.clear()


_live: dict[int, Any] = {}   # id(result) -> the live widget that shows it


class _Result:
    _kl_view: str = "kv"
    _kl_title: str = ""

    def _kl_bundle(self) -> tuple[str, str]:
        render = RENDERERS.get(self._kl_view, render_kv)
        return render(self, self._kl_title)

    def _ipython_display_(self) -> None:
        if any(o is self for o in _shown_this_cell):
            return
        from IPython.display import display

        widget = _live.get(id(self))
        if widget is not None and _rich_frontend():
            display(widget)
            return
        text, markup = self._kl_bundle()
        if _rich_frontend():
            display({"text/plain": text, "text/html": markup}, raw=True)
            return
        from IPython import get_ipython

        ip = get_ipython()
        hook = getattr(ip, "displayhook", None)
        if "\n" in text and getattr(hook, "is_active", False):  # after an "Out[n]: " prompt
            text = "\n" + text
        print(text)

    def _repr_pretty_(self, p, cycle) -> None:  # print(), pprint and tools that skip _ipython_display_
        p.text(self._kl_bundle()[0])


class ResultDict(_Result, dict):
    def __reduce__(self):
        return (dict, (dict(self),))


class ResultList(_Result, list):
    def __reduce__(self):
        return (list, (list(self),))


def result(value: Any, view: str, title: str = "") -> Any:
    """The service's value, displayed with ``view``."""
    if isinstance(value, dict):
        out: Any = ResultDict(value)
    elif isinstance(value, list):
        out = ResultList(value)
    else:
        return value
    out._kl_view, out._kl_title = view, title
    return out


def set_live(obj: Any, widget: Any) -> None:
    import weakref

    _live[id(obj)] = widget
    weakref.finalize(obj, _live.pop, id(obj), None)


def _rich_frontend() -> bool:
    """Inside a Jupyter kernel (its frontends render HTML and widgets)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


# -- formatting helpers ---------------------------------------------------------------------------
def fmt(value: Any) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def duration(seconds: Any) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def elapsed(view: dict) -> str:
    """Run time so far (or in all, when finished)."""
    if view.get("duration_seconds") is not None:
        return duration(view["duration_seconds"])
    started = view.get("started")
    if not started:
        return "-"
    try:
        t0 = datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return "-"
    return duration(max(0.0, (datetime.now(timezone.utc) - t0).total_seconds()))


STATUS_COLORS = {"Succeeded": "#2e7d32", "Failed": "#c62828", "Cancelled": "#ef6c00", "Running": "#1565c0",
                 "Pending": "#6d4c41", "Suspended": "#757575", "Cancelling": "#ef6c00", "Active": "#2e7d32"}
FINISHED = ("Succeeded", "Failed", "Cancelled")


def status_html(status: str | None) -> str:
    color = STATUS_COLORS.get(status or "", "#424242")
    return f'<span style="color:{color};font-weight:600">{html.escape(status or "-")}</span>'


_TABLE = 'style="border-collapse:collapse;font-size:90%"'
_CELL = 'style="text-align:left;padding:2px 10px 2px 0;vertical-align:top;border-bottom:1px solid #eee"'


def text_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def html_table(rows: Sequence[Sequence[str]], header: Sequence[str], raw_cols: Iterable[int] = ()) -> str:
    raw = set(raw_cols)
    head = "".join(f"<th {_CELL}>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td {_CELL}>{c if i in raw else html.escape(str(c))}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table {_TABLE}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table(items: Sequence[dict], columns: Sequence[tuple[str, Callable[[dict], Any]]], title: str,
          empty: str, status_col: str | None = "status") -> tuple[str, str]:
    header = [c for c, _ in columns]
    rows = [[fmt(get(item)) for _, get in columns] for item in items]
    if not rows:
        return f"{title}: {empty}", f"<p><b>{html.escape(title)}</b>: {html.escape(empty)}</p>"
    text = f"{title} ({len(rows)})\n" + text_table(rows, header)
    si = header.index(status_col) if status_col in header else None
    hrows = [[status_html(r[i]) if i == si else r[i] for i in range(len(r))] for r in rows]
    markup = f"<b>{html.escape(title)}</b> ({len(rows)})" + html_table(hrows, header, [si] if si is not None else [])
    return text, markup


def kv(pairs: Sequence[tuple[str, Any]], title: str, status_key: str = "status") -> tuple[str, str]:
    pairs = [(k, v) for k, v in pairs if v not in (None, "", [], {})]
    width = max((len(k) for k, _ in pairs), default=0)
    text = (title + "\n" if title else "") + "\n".join(f"  {k.ljust(width)}  {fmt(v)}" for k, v in pairs)
    rows = "".join(f"<tr><th {_CELL}>{html.escape(k)}</th><td {_CELL}>"
                   + (status_html(v) if k == status_key else html.escape(fmt(v))) + "</td></tr>"
                   for k, v in pairs)
    markup = (f"<b>{html.escape(title)}</b>" if title else "") + f"<table {_TABLE}>{rows}</table>"
    return text, markup


# -- renderers, one per kind of result ------------------------------------------------------------
def render_kv(d: dict, title: str) -> tuple[str, str]:
    return kv(list(d.items()), title)


def render_message(d: dict, title: str) -> tuple[str, str]:
    msg = d.get("message") or title
    return msg, f"<p>{html.escape(msg)}</p>"


def render_schedules(items: list, title: str) -> tuple[str, str]:
    return table(items, [
        ("name", lambda s: s.get("name")),
        ("status", lambda s: "Suspended" if s.get("suspend") else "Active"),
        ("schedule", lambda s: s.get("schedule")),
        ("timezone", lambda s: s.get("timezone")),
        ("notebook", lambda s: s.get("notebook")),
        ("group", lambda s: s.get("resource_group")),
        ("next run (UTC)", lambda s: (s.get("next_runs") or [None])[0]),
        ("last run", lambda s: s.get("last_schedule")),
        ("active", lambda s: len(s.get("active_runs") or []) or None),
    ], title or "schedules", "none yet (create one with %kubelab schedule create)")


def render_schedule(s: dict, title: str) -> tuple[str, str]:
    return kv([
        ("status", "Suspended" if s.get("suspend") else "Active"),
        ("notebook", s.get("notebook")), ("schedule", s.get("schedule")), ("timezone", s.get("timezone")),
        ("description", s.get("description")),
        ("resources", _compute(s)), ("parameters", s.get("parameters")),
        ("timeout", duration(s.get("timeout_seconds")) if s.get("timeout_seconds") else None),
        ("retries", s.get("retries")), ("concurrency", s.get("concurrency_policy")),
        ("webhook", s.get("webhook")), ("notify", s.get("notify") if s.get("webhook") else None),
        ("next runs (UTC)", s.get("next_runs")), ("last run", s.get("last_schedule")),
        ("last success", s.get("last_success")), ("active runs", s.get("active_runs")),
        ("snapshot", s.get("snapshot")), ("created", s.get("created")),
    ], title or f"schedule {s.get('name')}")


def render_runs(items: list, title: str) -> tuple[str, str]:
    return table(items, [
        ("run", lambda r: r.get("id")), ("status", lambda r: r.get("status")),
        ("trigger", lambda r: r.get("trigger")), ("started", lambda r: r.get("started") or r.get("created")),
        ("duration", lambda r: elapsed(r) if r.get("started") else None),
        ("output", lambda r: r.get("output_notebook")),
        ("message", lambda r: r.get("message")),
    ], title or "runs", "none yet (start one with %kubelab schedule run NAME)")


def render_run(r: dict, title: str) -> tuple[str, str]:
    return kv([
        ("status", r.get("status")), ("schedule", r.get("schedule")), ("trigger", r.get("trigger")),
        ("reason", r.get("reason") if r.get("reason") != r.get("status") else None), ("message", r.get("message")),
        ("created", r.get("created")), ("started", r.get("started")), ("finished", r.get("finished")),
        ("duration", elapsed(r) if r.get("started") else None), ("parameters", r.get("parameters")),
        ("output notebook", r.get("output_notebook")), ("output html", r.get("output_html")),
        ("pods", _pods(r)), ("logs", f"%kubelab logs {r.get('id')}"),
    ], title or f"run {r.get('id')}")


def render_jobs(items: list, title: str) -> tuple[str, str]:
    return table(items, [
        ("name", lambda j: j.get("name")), ("status", lambda j: j.get("status")),
        ("source", lambda j: j.get("path") or " ".join(j.get("command") or []) or j.get("source")),
        ("resources", _compute), ("workers", lambda j: j.get("workers")),
        ("started", lambda j: j.get("started") or j.get("created")),
        ("duration", lambda j: elapsed(j) if j.get("started") else None),
        ("message", lambda j: j.get("message")),
    ], title or "training jobs", "none yet (submit one with %%kubelab train or %kubelab jobs submit)")


def render_job(j: dict, title: str) -> tuple[str, str]:
    events = [f"{e.get('time') or ''} {e.get('reason')}: {e.get('message')}" for e in (j.get("events") or [])[-5:]]
    return kv([
        ("status", j.get("status")),
        ("reason", j.get("reason") if j.get("reason") != j.get("status") else None), ("message", j.get("message")),
        ("source", j.get("source")), ("path", j.get("path")), ("command", j.get("command")),
        ("args", j.get("args")), ("image", j.get("image")), ("resources", _compute(j)),
        ("workers", j.get("workers")), ("parameters", j.get("parameters")), ("queue", j.get("queue")),
        ("created", j.get("created")), ("started", j.get("started")), ("finished", j.get("finished")),
        ("duration", elapsed(j) if j.get("started") else None), ("pods", _pods(j)),
        ("model artifact", j.get("model_artifact")), ("recent events", events),
        ("logs", f"%kubelab logs {j.get('name')}"),
    ], title or f"job {j.get('name')}")


def render_pending(d: dict, title: str) -> tuple[str, str]:
    if not d.get("pending"):
        msg = f"job {d.get('name')!r} is not pending ({d.get('status')})"
        return msg, f"<p>{html.escape(msg)}</p>"
    return kv([("status", d.get("status")), ("why", d.get("reasons") or ["no reason given yet"])],
              title or f"why job {d.get('name')} is pending")


def render_info(d: dict, title: str) -> tuple[str, str]:
    text, markup = kv([("user", d.get("user")), ("namespace", d.get("namespace")), ("image", d.get("image")),
                       ("home", d.get("home")), ("default group", d.get("default_resource_group"))],
                      title or "kubelab workspace", status_key="")
    groups = d.get("resource_groups") or []
    t2, h2 = table(groups, [
        ("group", lambda g: g.get("name")), ("name", lambda g: g.get("display_name")),
        ("sizes", lambda g: [f"{s['name']} ({s['cpu']} CPU, {s['memory']})" for s in g.get("sizes") or []]),
        ("gpus", lambda g: f"up to {g['max_gpus']} {g.get('gpu_type') or g.get('gpu_resource') or ''}".strip()
         if g.get("max_gpus") else None),
        ("approval", lambda g: g.get("requires_approval") or None),
    ], "resource groups", "none", status_col=None)
    return text + "\n" + t2, markup + h2


def render_preview(d: dict, title: str) -> tuple[str, str]:
    rows = list(zip(d.get("next_runs") or [], d.get("next_runs_local") or []))
    head = f"next runs of {d.get('schedule')!r} ({d.get('timezone')})"
    return (head + "\n" + text_table(rows, ["UTC", "local"]),
            f"<b>{html.escape(head)}</b>" + html_table(rows, ["UTC", "local"]))


def _compute(d: dict) -> str | None:
    if not d.get("resource_group"):
        return None
    parts = [d["resource_group"]]
    if d.get("size"):
        parts.append(d["size"])
    if d.get("gpus"):
        parts.append(f"{d['gpus']} GPU")
    return "/".join(parts)


def _pods(d: dict) -> list[str]:
    out = []
    for p in d.get("pods") or []:
        s = f"{p.get('name')} {p.get('phase') or ''}".strip()
        if p.get("pending_reason"):
            s += f" ({p['pending_reason']})"
        out.append(s)
    return out


RENDERERS: dict[str, Callable[[Any, str], tuple[str, str]]] = {
    "kv": render_kv, "message": render_message, "schedules": render_schedules, "schedule": render_schedule,
    "runs": render_runs, "run": render_run, "jobs": render_jobs, "job": render_job, "pending": render_pending,
    "info": render_info, "preview": render_preview,
}
