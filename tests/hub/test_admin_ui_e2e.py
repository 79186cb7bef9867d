"""The admin pages in Debian's Chromium: logged in through the hub's login form,
each page renders inside JupyterHub's own page (navbar, styles) with live data;
a screenshot of each is kept in test-artifacts/hub/."""
from __future__ import annotations

import re

import pytest

from tests.hub.conftest import ALICE, BOB, SERVICE, login

pytestmark = pytest.mark.e2e

PAGES = {
    "users": ("#kubelab-users", f'tr[data-user="{ALICE}"]'),
    "groups": ("#group-gpu-a100", f'#group-gpu-a100 .kubelab-holders tr[data-user="{ALICE}"]'),
    "approvals": ("#kubelab-approvals", None),
    "workloads": ("#kubelab-workloads", None),
    "events": ("#kubelab-events", None),
    "audit": ("#kubelab-audit", None),
}


@pytest.fixture(scope="module")
def shots(artifacts):
    d = artifacts / "hub"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_each_admin_page_renders_in_chromium(chromium, admin_hub, adm_users, shots):
    ctx, page = login(chromium, admin_hub, "admin")
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        for name, (root, must_show) in PAGES.items():
            resp = page.goto(f"{SERVICE}/{name}")
            assert resp.status == 200, f"{name}: {resp.status}"
            page.wait_for_selector(root)
            # JupyterHub's own page: its navbar and logo, its stylesheet applied (Bootstrap's navbar)
            assert page.locator("#jupyterhub-logo img").count() == 1
            assert page.evaluate("getComputedStyle(document.querySelector('nav.navbar')).display") == "flex"
            assert page.locator(f'nav a.nav-link.active[href="{SERVICE}/{name}"]').count() == 1
            if must_show:
                assert page.locator(must_show).count() == 1, name
            path = shots / f"admin-{name}.png"
            page.screenshot(path=str(path), full_page=True)
            assert path.stat().st_size > 10_000
        # the gpu holder row names alice's server and its one GPU
        page.goto(f"{SERVICE}/groups")
        holder = page.locator(f'#group-gpu-a100 .kubelab-holders tr[data-user="{ALICE}"]').inner_text()
        assert "server" in holder and "kubelab-gpu-0" in holder and re.search(r"\b1\b", holder)
        # an action from the page: measure alice's storage (fetch with the page's XSRF token)
        page.goto(f"{SERVICE}/users")
        page.locator(f'tr[data-user="{ALICE}"] button[data-action="storage"]').click()
        page.wait_for_selector("#kubelab-message.alert-success")
        assert "MiB" in page.locator(f'tr[data-user="{ALICE}"] .kubelab-storage').inner_text()
        # a change from the page: its login cookie plus the page's XSRF token
        page.locator(f'tr[data-user="{BOB}"] button[data-action="reconcile"]').click()
        page.wait_for_function("document.querySelector('#kubelab-message').textContent.includes('reconciled')")
        assert f"kubelab-{BOB}" in page.locator("#kubelab-message").inner_text()
        # the same cookie without the XSRF token (as another site's form would send it) is not accepted
        r = ctx.request.post(f"{admin_hub.url}{SERVICE}/api/users/{BOB}/reconcile", data="{}",
                             headers={"Content-Type": "application/json"})
        assert r.status == 401, r.text()
        assert not errors, errors
    finally:
        ctx.close()


def test_a_non_admin_sees_a_403_page(chromium, admin_hub, adm_users, shots):
    ctx, page = login(chromium, admin_hub, BOB)
    try:
        resp = page.goto(f"{SERVICE}/users")
        assert resp.status == 403
        assert "not a hub admin" in page.locator("#kubelab-error").inner_text()
        assert page.locator("#kubelab-users").count() == 0
        page.screenshot(path=str(shots / "admin-forbidden.png"))
    finally:
        ctx.close()
