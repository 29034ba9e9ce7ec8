"""Accounts for the tests: one user per role, their password, and a login through the form."""
from __future__ import annotations

import re

USERS = {"vera": "viewer", "otto": "operator", "ada": "admin"}
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def add_users(database) -> None:
    """USERS, each with PASSWORD, in the record at ``database``."""
    from webapp.store import accounts as auth_store
    conn = auth_store.connect(database)
    for name, role in USERS.items():
        auth_store.add_user(conn, name, PASSWORD, role)
    conn.close()


def login(client, name: str, password: str = PASSWORD):
    """Log the test client in through the form; returns the page's CSRF token."""
    token = CSRF.search(client.get("/login").get_data(as_text=True))[1]
    answer = client.post("/login", data={"username": name, "password": password, "csrf_token": token})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return CSRF.search(client.get("/").get_data(as_text=True))[1]
