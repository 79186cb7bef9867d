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
    _kl_meta: dict = {}

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


def result(value: Any, view: str, title: str = "", meta: dict | None = None) -> Any:
    """The service's value, displayed with ``view`` (``meta``: more for the renderer, not part of the value)."""
    if isinstance(value, dict):
        out: Any = ResultDict(value)
    elif isinstance(value, list):
        out = ResultList(value)
    else:
        return value
    out._kl_view, out._kl_title = view, title
    if meta:
        out._kl_meta = dict(meta)
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


def human_size(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def pairs(d: Any, sep: str = "=") -> list[str] | None:
    """``{"accuracy": 0.97}`` as ``["accuracy=0.97"]``."""
    if not isinstance(d, dict) or not d:
        return None
    return [f"{k}{sep}{fmt(v)}" for k, v in d.items()]


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
                 "Pending": "#6d4c41", "Suspended": "#757575", "Cancelling": "#ef6c00", "Active": "#2e7d32",
                 # inference services
                 "Ready": "#2e7d32", "Failing": "#c62828", "Starting": "#6d4c41", "Updating": "#1565c0",
                 "Stopped": "#757575", "NotReady": "#ef6c00"}
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


# -- datasets ------------------------------------------------------------------------------------
def render_dataset_listing(d: dict, title: str) -> tuple[str, str]:
    rows = [{"name": f["name"], "size": None, "modified": None, "format": "folder"} for f in d.get("folders") or []]
    rows += [{"name": o["name"], "size": human_size(o.get("size")), "modified": o.get("last_modified"),
              "format": o.get("format")} for o in d.get("objects") or []]
    head = title or (d.get("prefix") or "your datasets: roots")
    text, markup = table(rows, [("name", lambda r: r["name"]), ("size", lambda r: r["size"]),
                                ("modified", lambda r: r["modified"]), ("format", lambda r: r["format"])],
                         head, "nothing here", status_col=None)
    if d.get("next_token"):
        more = f"more: %kubelab datasets ls {d.get('prefix')} --token {d['next_token']}"
        text += "\n" + more
        markup += f"<p>{html.escape(more)}</p>"
    return text, markup


def render_dataset_object(d: dict, title: str) -> tuple[str, str]:
    return kv([("uri", d.get("uri")), ("path", d.get("path")), ("size", human_size(d.get("size"))),
               ("format", d.get("format")), ("etag", d.get("etag")), ("version", d.get("version_id")),
               ("content type", d.get("content_type")), ("modified", d.get("last_modified")),
               ("writable", d.get("writable"))], title or d.get("key") or "object")


def render_dataset_preview(d: dict, title: str) -> tuple[str, str]:
    cols = [c["name"] for c in d.get("columns") or []]
    head = title or (f"{d.get('key')}: {d.get('row_count')} of {d.get('total_rows') or 'more'} rows, "
                     f"{len(cols)} columns (read {human_size(d.get('bytes_read'))} of {human_size(d.get('size'))} "
                     f"in {d.get('s3_requests')} requests)")
    rows = [[fmt(r.get(c)) for c in cols] for r in d.get("rows") or []]
    schema = [[c["name"], c["type"], "yes" if c.get("nullable") else "no"] for c in d.get("columns") or []]
    stats = d.get("stats") or {}
    stat_rows = [[c, fmt(s.get("count")), fmt(s.get("nulls")), fmt(s.get("min")), fmt(s.get("max")),
                  fmt(s.get("mean")), fmt(s.get("distinct"))] for c, s in stats.items()]
    stat_head = ["column", "count", "nulls", "min", "max", "mean", "distinct"]
    text = "\n\n".join([head, text_table(rows, cols) if cols else "(no columns)",
                        "statistics of these rows", text_table(stat_rows, stat_head)])
    markup = (f"<b>{html.escape(head)}</b>" + (html_table(rows, cols) if cols else "")
              + "<details><summary>schema and statistics</summary>"
              + html_table(schema, ["column", "type", "nullable"])
              + html_table(stat_rows, stat_head) + "</details>")
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
    return table(items, [
        ("name", lambda x: x.get("name")), ("shared", lambda x: x.get("shared")),
        ("format", lambda x: x.get("format")), ("location", lambda x: x.get("uri")),
        ("size", lambda x: human_size(x.get("bytes")) if x.get("bytes") is not None else None),
        ("tags", lambda x: x.get("tags")), ("owner", lambda x: x.get("owner")),
        ("description", lambda x: (x.get("description") or "")[:80]),
    ], title or "registered datasets", "none yet (register one with %kubelab datasets register)", status_col=None)


def render_dataset(x: dict, title: str) -> tuple[str, str]:
    return kv([
        ("name", x.get("display_name") or x.get("name")), ("shared", x.get("shared")),
        ("description", x.get("description")), ("owner", x.get("owner")), ("tags", x.get("tags")),
        ("format", x.get("format")), ("location", x.get("uri")), ("etag", x.get("etag")),
        ("version", x.get("version_id")), ("objects", x.get("objects")),
        ("size", human_size(x.get("bytes")) if x.get("bytes") is not None else None),
        ("schema", [f"{c['name']}: {c['type']}" for c in x.get("schema") or []]), ("created", x.get("created")),
    ], title or f"dataset {x.get('name')}", status_key="")


def render_transfer(t: dict, title: str) -> tuple[str, str]:
    return kv([
        ("status", t.get("status")), ("direction", t.get("direction")), ("path", t.get("path")),
        ("uri", t.get("uri")), ("progress", f"{t.get('percent', 0):g}% of {human_size(t.get('bytes_total'))}"),
        ("multipart", t.get("multipart")), ("etag", t.get("etag")), ("error", t.get("error")),
        ("seconds", t.get("seconds")),
    ], title or f"transfer {t.get('id')}", status_key="")


def render_transfers(items: list, title: str) -> tuple[str, str]:
    return table(items, [
        ("id", lambda t: t.get("id")), ("status", lambda t: t.get("status")),
        ("direction", lambda t: t.get("direction")), ("path", lambda t: t.get("path")),
        ("uri", lambda t: t.get("uri")), ("progress", lambda t: f"{t.get('percent', 0):g}%"),
        ("error", lambda t: t.get("error")),
    ], title or "transfers", "none yet (%kubelab datasets upload / download)", status_col=None)


# -- models and inference services ---------------------------------------------------------------
def _aliases(d: dict) -> list[str] | None:
    return [f"{a} -> v{v}" for a, v in sorted((d.get("aliases") or {}).items())] or None


def _validation(v: dict) -> str | None:
    val = v.get("validation") or {}
    if not val.get("status"):
        return None
    return val["status"] if val["status"] == "valid" else f"{val['status']}: {val.get('reason') or 'no reason'}"


def _tensors(specs: Any) -> list[str] | None:
    out = [f"{s.get('name')}: {s.get('datatype')} {s.get('shape')}" for s in specs or [] if isinstance(s, dict)]
    return out or None


def render_models(items: list, title: str) -> tuple[str, str]:
    return table(items, [
        ("name", lambda m: m.get("name")),
        ("latest", lambda m: f"v{m['latest_version']}" if m.get("latest_version") else None),
        ("versions", lambda m: len(m.get("versions") or []) or None),
        ("aliases", _aliases), ("tags", lambda m: m.get("tags")),
        ("description", lambda m: (m.get("description") or "")[:80]), ("created", lambda m: m.get("created")),
    ], title or "models", "none yet (register one with %kubelab models register NAME --path P)", status_col=None)


def render_model(m: dict, title: str) -> tuple[str, str]:
    served = [f"{s.get('service')}: v{s.get('version')}" + (f" ({s['alias']})" if s.get("alias") else "")
              for s in m.get("served_by") or []]
    text, markup = kv([
        ("description", m.get("description")), ("tags", m.get("tags")), ("aliases", _aliases(m)),
        ("latest version", m.get("latest_version")), ("created", m.get("created")), ("served by", served),
    ], title or f"model {m.get('name')}", status_key="")
    versions = m.get("versions") or []
    if not versions:
        return text, markup
    t2, h2 = table(versions, [
        ("version", lambda v: v.get("version")), ("format", lambda v: v.get("format")),
        ("validation", _validation), ("size", lambda v: human_size((v.get("artifact") or {}).get("bytes"))),
        ("metrics", lambda v: pairs(v.get("metrics"))), ("served by", lambda v: v.get("served_by")),
        ("created", lambda v: v.get("created")), ("description", lambda v: (v.get("description") or "")[:60]),
    ], "versions", "none", status_col=None)
    return text + "\n" + t2, markup + h2


def render_model_version(v: dict, title: str) -> tuple[str, str]:
    art = v.get("artifact") or {}
    sig = v.get("signature") or {}
    serve = (f"%kubelab serve {v.get('model')} --model {v.get('model')} --version {v.get('version')}"
             if v.get("model") and v.get("version") else None)
    return kv([
        ("format", v.get("format")), ("validation", _validation(v)), ("description", v.get("description")),
        ("inputs", _tensors(sig.get("inputs"))), ("outputs", _tensors(sig.get("outputs"))),
        ("metrics", pairs(v.get("metrics"))), ("lineage", pairs(v.get("lineage"))), ("tags", v.get("tags")),
        ("frameworks", pairs(v.get("framework_versions"), " ")), ("artifact", art.get("uri")),
        ("files", art.get("files")), ("size", human_size(art["bytes"]) if "bytes" in art else None),
        ("sha256", art.get("sha256")), ("created", v.get("created")), ("serve it", serve),
    ], title or f"model {v.get('model')} version {v.get('version')}", status_key="")


def _served_version(s: dict) -> str | None:
    if s.get("version") is None:
        return None
    return f"v{s['version']}" + (f" ({s['alias']})" if s.get("alias") else "")


def render_services(items: list, title: str) -> tuple[str, str]:
    return table(items, [
        ("name", lambda s: s.get("name")), ("model", lambda s: s.get("model")), ("version", _served_version),
        ("ready", lambda s: f"{s.get('ready_replicas') or 0}/{s.get('replicas')}" if "replicas" in s else None),
        ("format", lambda s: s.get("format")), ("resources", _compute),
        ("previous", lambda s: f"v{s['previous_version']}" if s.get("previous_version") else None),
        ("url", lambda s: s.get("url")),
    ], title or "inference services", "none yet (deploy one with %kubelab serve NAME --model M)", status_col=None)


def service_pods(s: dict) -> list[str]:
    out = []
    for p in s.get("pods") or []:
        bits = [p.get("phase") or "", "ready" if p.get("ready") else "not ready"]
        if p.get("version"):
            bits.append(f"v{p['version']}")
        line = f"{p.get('name')} ({', '.join(b for b in bits if b)})"
        if p.get("pending_reason"):
            line += f": {p['pending_reason']}"
        out.append(line)
    return out


def render_service(s: dict, title: str) -> tuple[str, str]:
    events = [f"{e.get('time') or ''} {e.get('reason')}: {e.get('message')}".strip()
              for e in (s.get("events") or [])[-5:] if e.get("type") == "Warning"]
    return kv([
        ("state", s.get("state")), ("model", s.get("model")), ("version", _served_version(s)),
        ("previous version", s.get("previous_version")),
        ("replicas", f"{s.get('ready_replicas') or 0}/{s.get('replicas')} ready" if "replicas" in s else None),
        ("resources", _compute(s)), ("format", s.get("format")), ("kind", s.get("kind")), ("url", s.get("url")),
        ("problems", s.get("problems")), ("pods", service_pods(s)), ("warnings", events),
        ("predict", f"%kubelab predict {s.get('name')} DATA" if s.get("state") == "Ready" else None),
    ], title or f"inference service {s.get('name')}", status_key="state")


MAX_PREDICTION_ROWS = 20


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_short(x) for x in v) + "]"
    return fmt(v)


def render_predictions(outputs: dict, title: str) -> tuple[str, str]:
    """One row per input row, one column per output (each output's first dimension is the rows)."""
    meta = getattr(outputs, "_kl_meta", None) or {}
    head = title or "predictions"
    names = list(outputs)
    lengths = [len(v) for v in outputs.values() if isinstance(v, list)]
    n = meta.get("rows") or max(lengths, default=0)
    if not names or not n:
        return f"{head}: no outputs", f"<p><b>{html.escape(head)}</b>: no outputs</p>"
    rows = []
    for i in range(min(n, MAX_PREDICTION_ROWS)):
        rows.append([str(i), *(_short(v[i]) if isinstance(v, list) and i < len(v) and len(v) == n else
                               (_short(v) if i == 0 else "") for v in outputs.values())])
    header = ["row", *names]
    more = f"... and {n - MAX_PREDICTION_ROWS} more rows" if n > MAX_PREDICTION_ROWS else ""
    text = f"{head}\n" + text_table(rows, header) + (f"\n{more}" if more else "")
    markup = f"<b>{html.escape(head)}</b>" + html_table(rows, header) + (f"<p>{html.escape(more)}</p>" if more else "")
    return text, markup


RENDERERS: dict[str, Callable[[Any, str], tuple[str, str]]] = {
    "kv": render_kv, "message": render_message, "schedules": render_schedules, "schedule": render_schedule,
    "runs": render_runs, "run": render_run, "jobs": render_jobs, "job": render_job, "pending": render_pending,
    "info": render_info, "preview": render_preview,
    "dataset-listing": render_dataset_listing, "dataset-object": render_dataset_object,
    "dataset-preview": render_dataset_preview, "dataset-snippet": render_dataset_snippet,
    "datasets": render_datasets, "dataset": render_dataset, "transfer": render_transfer,
    "transfers": render_transfers,
    "models": render_models, "model": render_model, "model-version": render_model_version,
    "services": render_services, "service": render_service, "predictions": render_predictions,
}
LIST_VIEWS = frozenset({"schedules", "runs", "jobs", "datasets", "transfers", "models", "services"})
