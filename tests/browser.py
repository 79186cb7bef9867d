"""Debian's Chromium driven by Playwright, shared by the browser tests and bench-ui.

Playwright never downloads a browser here: it launches /usr/bin/chromium
(scripts/install-deps.sh installs it). The ``chromium`` fixture (tests/conftest.py)
is per test module: Playwright's sync API keeps an asyncio loop running in the
main thread while it is started, which other tests' ``asyncio.run`` would trip on.
"""
from __future__ import annotations

import os
import re
import shutil

from tests.hubclient import Hub

CHROMIUM = os.environ.get("KUBELAB_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google on this closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage"]
PASSWORD = "kubelab"  # devcluster's demo password (devcluster/jupyterhub_config.py)
LIVE_PAGES: list = []  # screenshotted when a test fails (test-artifacts/ui/FAILED-*.png)


def login(chromium, hub: Hub, user: str, viewport=(1440, 900), color_scheme: str = "light"):
    """A browser context logged into the hub as ``user`` (the hub's real login form)."""
    ctx = chromium.new_context(base_url=hub.url, viewport={"width": viewport[0], "height": viewport[1]},
                               color_scheme=color_scheme)
    ctx.set_default_timeout(60_000)
    page = ctx.new_page()
    LIVE_PAGES.append(page)
    page.goto("/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login_submit")
    page.wait_for_url(re.compile(r".*/(hub/(home|spawn.*|spawn-pending.*)|user/.*)$"))
    return ctx, page
