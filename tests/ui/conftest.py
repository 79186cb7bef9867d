"""Browser tests: JupyterLab (and the hub's pages) in Debian's Chromium, driven by Playwright.

Playwright never downloads a browser here: it launches /usr/bin/chromium
(scripts/install-deps.sh installs it). The servers are real: the hub on
devcluster spawns each user's JupyterLab, whose kubelab extension talks to
devcluster's apiserver and S3. Screenshots land in test-artifacts/ui/.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser import LIVE_PAGES, login  # noqa: F401 - login is used by the UI tests
from tests.hubclient import Hub

PANELS = ("datasets", "schedules", "jobs", "models", "services", "resources")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for i, page in enumerate(p for p in LIVE_PAGES if not p.is_closed()):
            try:
                out = Path(item.config.rootpath) / "test-artifacts" / "ui" / f"FAILED-{item.name[:80]}-{i}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out), full_page=True)
            except Exception:  # noqa: BLE001 - a failing screenshot must not hide the test's failure
                pass


@pytest.fixture(scope="session")
def shots(artifacts: Path) -> Path:
    d = artifacts / "ui"
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class Lab:
    """A user's JupyterLab in the browser, with the kubelab sidebar open."""

    page: object
    user: str
    shots: Path
    errors: list = None

    def __post_init__(self):
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, path: str = "") -> "Lab":
        url = f"/user/{self.user}/lab" + (f"/tree/{path}" if path else "")
        self.page.goto(url)
        self.page.wait_for_selector("#jp-main-dock-panel", state="visible", timeout=120_000)
        self.page.wait_for_function("() => !document.querySelector('#jupyterlab-splash')", timeout=120_000)
        return self

    def sidebar(self) -> "Lab":
        """Open the kubelab sidebar (its tab in the left area)."""
        if not self.page.locator("#kubelab-sidebar").is_visible():
            self.page.locator('.jp-SideBar [data-id="kubelab-sidebar"]').click()
        self.page.locator("#kubelab-sidebar").wait_for(state="visible")
        return self

    def panel(self, name: str):
        """A panel's root; expanded if it was collapsed."""
        self.sidebar()
        for other in PANELS:  # collapse the others, as a user focusing on one panel would
            el = self.page.get_by_test_id(f"kubelab-panel-{other}")
            if other != name and el.is_visible():
                self._title(el).click()
                el.wait_for(state="hidden")
        root = self.page.get_by_test_id(f"kubelab-panel-{name}")
        root.wait_for(state="attached")
        if not root.is_visible():  # collapsed: click its title in the accordion
            self._title(root).click()
        root.wait_for(state="visible")
        return root

    def _title(self, panel):
        return self.page.locator(f"[id='{panel.get_attribute('aria-labelledby')}']")

    def row(self, panel, name: str):
        return panel.locator(f'[data-testid="kubelab-row"][data-name="{name}"]')

    def wait_status(self, panel: str, name: str, statuses=("Succeeded", "Failed"), timeout: float = 300) -> str:
        """Wait until the row ``name`` in ``panel`` shows one of ``statuses`` (its data-status); return it."""
        sel = f'[data-testid="kubelab-panel-{panel}"] [data-testid="kubelab-row"][data-name="{name}"]'
        self.page.wait_for_function("([sel, ok]) => { const r = document.querySelector(sel);"
                                    " return r && ok.includes(r.dataset.status); }", arg=[sel, list(statuses)],
                                    timeout=timeout * 1000)
        return self.page.locator(sel).get_attribute("data-status")

    def wait_run(self, statuses=("Succeeded", "Failed"), timeout: float = 300) -> str:
        """Wait until a schedule's newest run (the first run row) shows one of ``statuses``; return it."""
        self.page.wait_for_function("ok => { const r = document.querySelector('[data-testid=kubelab-run]');"
                                    " return r && ok.includes(r.dataset.status); }", arg=list(statuses),
                                    timeout=timeout * 1000)
        return self.page.get_by_test_id("kubelab-run").first.get_attribute("data-status")

    def settle(self, ms: int = 1000) -> None:
        """Let a panel finish re-rendering after a refresh: a click on a row that is
        being replaced (a model just registered) can be lost."""
        self.page.wait_for_timeout(ms)

    def shot(self, name: str, locator=None) -> Path:
        path = self.shots / f"{name}.png"
        (locator or self.page).screenshot(path=str(path))
        assert path.stat().st_size > 5_000, f"screenshot {path} looks empty"
        return path


def ensure_server(hub: Hub, user: str, groups=(), options: dict | None = None) -> None:
    hub.ensure_user(user, list(groups))
    if not (hub.server(user) or {}).get("ready"):
        r = hub.start(user, options or {"resource_group": "cpu"})
        assert r.status_code in (201, 202, 400), r.text
        hub.wait_ready(user)


@pytest.fixture(scope="module")
def lab_for(chromium, hub: Hub, shots: Path):
    """``lab_for(user)``: a logged-in JupyterLab page for a user whose server runs (spawned if needed)."""
    opened = []

    def make(user: str, groups=(), options: dict | None = None) -> Lab:
        ensure_server(hub, user, groups, options)
        ctx, page = login(chromium, hub, user)
        opened.append(ctx)
        return Lab(page, user, shots).open()

    yield make
    for ctx in opened:
        ctx.close()
