"""The live status of a submitted job, a started run or a deployed model, as ipywidgets.

A :class:`StatusWatcher` shows a status line (``ipywidgets.HTML``), a progress
bar through the phases (submitted, pending, running, finished) and the
latest log lines (``ipywidgets.Output``). A :class:`ServiceWatcher` shows an
inference service's state, its ready replicas (a progress bar), what keeps it
from serving, and its pods. A daemon thread polls the service every
``interval`` seconds until the run or job finishes (the inference service is
Ready, Failing or Stopped), is deleted, or the widget is closed. Widget state
is only ever assigned from that thread (no ``with output:`` capture), which
ipykernel sends safely from any thread.
"""
from __future__ import annotations

import html
import threading
import time
from typing import Callable

from . import views

PHASES = {"Pending": 1, "Suspended": 1, "Running": 2, "Cancelling": 2, "Succeeded": 3, "Failed": 3, "Cancelled": 3}
BAR_STYLES = {"Succeeded": "success", "Failed": "danger", "Cancelled": "warning", "Cancelling": "warning"}
MAX_ERRORS = 30  # consecutive failed polls before giving up


class Watcher:
    """A widget and the daemon thread that refreshes it: ``poll()`` every ``interval`` seconds
    until it returns True, the widget is closed or :meth:`stop` is called."""

    widget = None
    _errors = 0

    def __init__(self, name: str, interval: float):
        self.name = name
        self.interval = max(0.05, float(interval))
        self.error: str | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"kubelab-watch-{name}", daemon=True)

    def poll(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def _render(self, gone: bool = False) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> "Watcher":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def done(self) -> bool:
        return not self.thread.is_alive() and self.thread.ident is not None

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self.poll() or self._closed():
                    return
                self._stop.wait(self.interval)
        except Exception as e:  # noqa: BLE001 - a thread has no one to raise to: show it, stop
            self.error = f"stopped watching: {e.__class__.__name__}: {e}"
            try:
                self._render()
            except Exception:  # noqa: BLE001
                pass

    def _closed(self) -> bool:
        return getattr(self.widget, "comm", True) is None

    def _refreshing(self) -> str:
        return (f'<span style="color:#9e9e9e">refreshing every {self.interval:g}s, '
                f'{time.strftime("%H:%M:%S")}</span>')


class StatusWatcher(Watcher):
    def __init__(self, what: str, name: str, fetch: Callable[[], dict], logs: Callable[[int], str],
                 interval: float = 2.0, tail: int = 20, initial: dict | None = None):
        import ipywidgets as w

        super().__init__(name, interval)
        self.what = what
        self.fetch, self.get_logs = fetch, logs
        self.tail = tail
        self.view: dict = dict(initial or {})
        self.log_text = ""
        self.status = w.HTML()
        self.progress = w.IntProgress(value=0, min=0, max=3, bar_style="info",
                                      layout=w.Layout(width="12em", margin="2px 10px 2px 0"))
        self.output = w.Output(layout=w.Layout(max_height="18em", overflow="auto", border="1px solid #e0e0e0",
                                               padding="0 4px"))
        self.widget = w.VBox([w.HBox([self.progress, self.status]), self.output])
        self._render()

    # -- one poll ---------------------------------------------------------------------------------
    def poll(self) -> bool:
        """Refresh once; True when there is nothing more to watch."""
        from kubelab.server_extension.services import NotFound, ServiceError

        try:
            self.view = self.fetch()
            self.error = None
        except NotFound as e:
            self.error = f"{e.message} (deleted?)"
            self._render(gone=True)
            return True
        except ServiceError as e:
            self.error = e.message
            self._errors += 1
            self._render()
            return self._errors >= MAX_ERRORS
        self._errors = 0
        status = self.view.get("status")
        if status in ("Running", *views.FINISHED) or self.view.get("started"):
            try:
                text = self.get_logs(self.tail)
            except ServiceError as e:  # not started yet, or the pod is gone
                text = self.log_text or f"({e.message})"
            if text != self.log_text:
                self.log_text = text
                self.output.outputs = ({"output_type": "stream", "name": "stdout", "text": text},)
        self._render()
        return status in views.FINISHED

    # -- drawing ----------------------------------------------------------------------------------
    def _render(self, gone: bool = False) -> None:
        self.status.value = self.status_html(gone)
        status = self.view.get("status") or "Submitted"
        self.progress.value = PHASES.get(status, 0)
        self.progress.bar_style = "danger" if gone else BAR_STYLES.get(status, "info")
        workers = self.view.get("workers")
        self.progress.description = ""
        if workers and workers > 1 and status not in views.FINISHED:
            self.progress.description = f"{self.view.get('succeeded', 0)}/{workers}"

    def status_line(self) -> str:
        """The one-line status, as text."""
        v = self.view
        parts = [f"{self.what} {self.name}: {v.get('status') or 'Submitted'}"]
        if v.get("started"):
            parts.append(views.elapsed(v))
        if v.get("message"):
            parts.append(v["message"])
        if self.error:
            parts.append(self.error)
        return " | ".join(parts)

    def status_html(self, gone: bool = False) -> str:
        v = self.view
        bits = [f"<b>{html.escape(self.what)} {html.escape(self.name)}</b>",
                views.status_html("Deleted" if gone else (v.get("status") or "Submitted"))]
        if v.get("started"):
            bits.append(f"started {html.escape(v['started'])}, {views.elapsed(v)}")
        pods = v.get("pods") or []
        if pods and v.get("status") not in views.FINISHED:
            bits.append(html.escape(", ".join(f"{p.get('name')}: {p.get('phase')}" for p in pods[-4:])))
        if v.get("message"):
            bits.append(html.escape(str(v["message"])))
        if v.get("output_notebook"):
            bits.append(f"output <code>{html.escape(v['output_notebook'])}</code>")
        if self.error:
            bits.append(f'<span style="color:#c62828">{html.escape(self.error)}</span>')
        if not self._stop.is_set() and v.get("status") not in views.FINISHED and not gone:
            bits.append(self._refreshing())
        return " &middot; ".join(bits)


SERVICE_SETTLED = ("Ready", "Failing", "Stopped")
SERVICE_BAR_STYLES = {"Ready": "success", "Failing": "danger", "Stopped": "warning", "NotReady": "warning"}


class ServiceWatcher(Watcher):
    """An inference service until it serves (or fails): state, ready replicas, problems, pods."""

    def __init__(self, name: str, fetch: Callable[[], dict], interval: float = 2.0, initial: dict | None = None):
        import ipywidgets as w

        super().__init__(name, interval)
        self.fetch = fetch
        self.view: dict = dict(initial or {})
        self.gone = False
        self.status = w.HTML()
        self.progress = w.IntProgress(value=0, min=0, max=1, bar_style="info",
                                      layout=w.Layout(width="12em", margin="2px 10px 2px 0"))
        self.details = w.HTML(layout=w.Layout(max_height="18em", overflow="auto"))
        self.widget = w.VBox([w.HBox([self.progress, self.status]), self.details])
        self._render()

    @property
    def settled(self) -> bool:
        """Ready with every pod on the served version (a rolling update has finished), Failing or Stopped."""
        v = self.view
        state = v.get("state")
        if state == "Ready":
            want = str(v.get("version"))
            return all(str(p.get("version")) == want for p in v.get("pods") or [] if p.get("version") is not None)
        return state in SERVICE_SETTLED

    def poll(self) -> bool:
        from kubelab.server_extension.services import NotFound, ServiceError

        try:
            self.view = self.fetch()
            self.error = None
        except NotFound as e:
            self.error, self.gone = f"{e.message} (deleted?)", True
            self._render(gone=True)
            return True
        except ServiceError as e:
            self.error = e.message
            self._errors += 1
            self._render()
            return self._errors >= MAX_ERRORS
        self._errors = 0
        done = self.settled
        if done:
            self._stop.set()  # (the last drawing says so: no "refreshing")
        self._render()
        return done

    def _render(self, gone: bool = False) -> None:
        v = self.view
        state = "Deleted" if gone or self.gone else (v.get("state") or "Starting")
        want = v.get("replicas")
        self.progress.max = max(1, want or 1)
        self.progress.value = min(self.progress.max, v.get("ready_replicas") or 0)
        self.progress.bar_style = "danger" if state == "Deleted" else SERVICE_BAR_STYLES.get(state, "info")
        self.progress.description = f"{v.get('ready_replicas') or 0}/{want}" if want is not None else ""
        self.status.value = self.status_html(state)
        rows = [[p.get("name"), p.get("phase") or "-", "yes" if p.get("ready") else "no",
                 f"v{p['version']}" if p.get("version") else "-", p.get("pending_reason") or ""]
                for p in v.get("pods") or []]
        problems = "".join(f'<div style="color:#c62828">{html.escape(str(p))}</div>' for p in v.get("problems") or [])
        self.details.value = problems + (views.html_table(rows, ["pod", "phase", "ready", "version", "waiting for"])
                                         if rows else "")

    def status_line(self) -> str:
        v = self.view
        parts = [f"service {self.name}: {'Deleted' if self.gone else v.get('state') or 'Starting'}"]
        if v.get("replicas") is not None:
            parts.append(f"{v.get('ready_replicas') or 0}/{v['replicas']} ready")
        if v.get("model"):
            parts.append(f"model {v['model']} {views._served_version(v) or ''}".strip())
        parts += [str(p) for p in v.get("problems") or []]
        if self.error:
            parts.append(self.error)
        return " | ".join(parts)

    def status_html(self, state: str) -> str:
        v = self.view
        bits = [f"<b>service {html.escape(self.name)}</b>", views.status_html(state)]
        if v.get("model"):
            bits.append(html.escape(f"model {v['model']} {views._served_version(v) or ''}".strip()))
        if state == "Ready":
            bits.append(html.escape(f"%kubelab predict {self.name} DATA"))
        if self.error:
            bits.append(f'<span style="color:#c62828">{html.escape(self.error)}</span>')
        if not self._stop.is_set() and state != "Deleted":
            bits.append(self._refreshing())
        return " &middot; ".join(bits)
