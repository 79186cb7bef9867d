import itertools

import pytest

from kubelab.core.names import is_dns_label, render, safe_slug, validate_dns_label

USERS = ["alice", "Alice", "alice@example.org", "alice-example-org", "a--b", "a-b", "bob smith", "bob.smith",
         "ünïcode", "x" * 62, "x" * 63, "x" * 64, "x" * 200, "-lead", "trail-", "1", "a---12345678"]


def test_slugs_are_valid_dns_labels():
    for u in USERS:
        assert is_dns_label(safe_slug(u)), u


def test_distinct_users_never_collide():
    slugs = {u: safe_slug(u) for u in USERS}
    for a, b in itertools.combinations(USERS, 2):
        assert slugs[a] != slugs[b], (a, b)


def test_valid_names_are_kept_readable():
    assert safe_slug("alice") == "alice"
    assert safe_slug("bob-smith") == "bob-smith"
    assert safe_slug("Bob").startswith("bob---")


def test_render_namespace_template_handles_long_names():
    assert render("kubelab-{username}", username="alice") == "kubelab-alice"
    long = render("kubelab-{username}", username="y" * 100)
    assert is_dns_label(long) and long.startswith("kubelab-")
    assert long != render("kubelab-{username}", username="y" * 101)


def test_validate_gives_one_line_message():
    with pytest.raises(ValueError) as e:
        validate_dns_label("My_Job", "job name")
    assert "invalid job name 'My_Job'" in str(e.value) and "\n" not in str(e.value)
    assert validate_dns_label("my-job") == "my-job"
