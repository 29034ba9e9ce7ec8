"""Who is asking: a bearer token, the proxy's X-Remote-User, a login session, or (accounts off)
the local admin. Resolved once per request into ``g.principal``."""
from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from flask import current_app, g, has_request_context, request
from flask_login import LoginManager, current_user

from webapp.web.extensions import get_db
from webapp.web.runs.log import shorten_paths
from webapp.store import accounts

login_manager = LoginManager()


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    via: str  # "session", "token", "admin-token", "header" or "local" (accounts off)

    def can(self, role: str) -> bool:
        return accounts.role_rank(self.role) >= accounts.role_rank(role)


class LoginUser:
    """Flask-Login's user object. The id holds a password fingerprint, so that a new password
    ends the sessions made with the old one, and a server-side session id, so that logging out
    ends this one for whoever holds a copy of the cookie."""

    is_active = is_authenticated = True
    is_anonymous = False

    def __init__(self, row: dict, session_id: str):
        self.row, self.name, self.role, self.session_id = row, row["name"], row["role"], session_id

    def get_id(self) -> str:
        return f"{self.row['id']}:{accounts.password_fingerprint(self.row)}:{self.session_id}"


@login_manager.user_loader
def _load_user(user_id: str):
    raw_id, fingerprint, session_id = (user_id.split(":", 2) + ["", ""])[:3]
    if not raw_id.isdigit() or not session_id:
        return None
    row = accounts.get_user_by_id(get_db(), int(raw_id))
    if row is None or not hmac.compare_digest(accounts.password_fingerprint(row), fingerprint):
        return None
    if not accounts.session_alive(get_db(), session_id, row["id"]):
        return None
    return LoginUser(row, session_id)


def auth_on() -> bool:
    return current_app.config["AUTH"] == "on"


def current_principal() -> Principal | None:
    if "principal" not in g:
        g.principal = _resolve()
    return g.principal


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _resolve() -> Principal | None:
    if not auth_on():
        return Principal("local", "admin", "local")
    token = bearer_token()
    if token is not None:  # a wrong token is a wrong token: no falling back to a session
        return _from_token(token)
    header_user = _from_trusted_header()
    if header_user is not None:
        return header_user
    if current_user.is_authenticated:
        return Principal(current_user.name, current_user.role, "session")
    return None


def _from_token(token: str) -> Principal | None:
    admin_token = current_app.config.get("ADMIN_TOKEN")
    if admin_token and hmac.compare_digest(token.encode(), str(admin_token).encode()):
        return Principal("admin-token", "admin", "admin-token")
    found = accounts.find_token(get_db(), token)
    if found is None:
        return None
    return Principal(found["user_name"] or f"token:{found['name']}", found["role"], "token")


def peer_address() -> str | None:
    """The address that connected to us, before ProxyFix replaced it with X-Forwarded-For."""
    original = request.environ.get("werkzeug.proxy_fix.orig") or {}
    return original.get("REMOTE_ADDR") or request.environ.get("REMOTE_ADDR")


def peer_trusted(address, networks) -> bool:
    try:
        peer = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(peer in network for network in networks)


def _from_trusted_header() -> Principal | None:
    networks = current_app.config["TRUSTED_PROXY_NETWORKS"]
    header = current_app.config.get("REMOTE_USER_HEADER")  # off unless an admin names it
    name = request.headers.get(header) if header else None
    if not networks or not name:
        return None
    if not peer_trusted(peer_address(), networks):
        return None  # anyone else could send the header: ignore it
    row = accounts.get_user(get_db(), name.strip())
    return Principal(row["name"], row["role"], "header") if row else None


def parse_networks(raw) -> list:
    if not raw:
        return []
    items = raw if isinstance(raw, (list, tuple)) else str(raw).replace(",", " ").split()
    return [ipaddress.ip_network(item.strip(), strict=False) for item in items if str(item).strip()]


def can(role: str) -> bool:
    """For templates: whether the one asking has ``role`` (buttons a role cannot use are not shown).
    No request (a fragment rendered once for every stream): no, so nothing is shown that a viewer
    could not use."""
    if not has_request_context():
        return False
    principal = current_principal()
    return principal is not None and principal.can(role)


def error_text(text, reference=None) -> str:
    """An error as this user may see it: admins the whole text; anyone else its first line and an
    id to quote, never a traceback or a log tail with server paths."""
    return str(text or "") if can("admin") else short_error(text, reference)


def short_error(text, reference=None) -> str:
    text = str(text or "")
    if "\n" not in text.strip():
        return text
    first = text.strip().splitlines()[0]
    return f"{first} (details for an admin: run {reference})" if reference is not None else first


def viewer_text(text) -> str:
    """A log line as the one asking may see it: whole for an admin, its server paths shortened
    (``…/model.safetensors``) for anyone else, and for a fragment rendered once for every stream."""
    return str(text or "") if can("admin") else shorten_paths(str(text or ""))


def redacted_data(data, run_id):
    """An event's data as a non-admin gets it: no traceback, an error's first line, a log line's
    server paths shortened."""
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        data = {**data, "text": shorten_paths(data["text"])}
    if not isinstance(data, dict) or not ({"traceback", "reason"} & set(data)):
        return data
    data = {key: value for key, value in data.items() if key != "traceback"}
    if data.get("reason"):
        data["reason"] = short_error(data["reason"], run_id)
    return data
