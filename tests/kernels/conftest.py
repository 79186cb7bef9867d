"""Fixtures for the magics' tests: the hub's user servers for the end-to-end tests."""
from tests.server_extension.conftest import alice, bob, users  # noqa: F401

__all__ = ["users", "alice", "bob"]
