"""Whom to believe about the request itself: X-Forwarded-* only from a trusted proxy, and (with
accounts off) the Host header only when it names this machine.

- OTWEB_PROXY_HOPS proxies' X-Forwarded-For/-Proto/-Host/-Prefix are honoured only when the
  connection comes from an address in OTWEB_TRUSTED_PROXIES (default with hops set: loopback, as
  nginx on the same box). Anyone else connecting directly keeps their own address, so they cannot
  pick a new one per request to dodge the rate limits. Trusting 127.0.0.1 trusts every local process.
- Accounts off (loopback only): a DNS-rebinding page reaches 127.0.0.1 under its own name, so a
  request whose Host is not a loopback name or one of OTWEB_ALLOWED_HOSTS is refused.
"""
from __future__ import annotations

from flask import current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix

from webapp.store.accounts import is_loopback
from webapp.web.auth.identity import auth_on, parse_networks, peer_trusted
from webapp.web.errors import ApiError

LOOPBACK_PROXIES = "127.0.0.1/32 ::1/128"


class TrustedProxyFix:
    def __init__(self, app, hops: int, networks):
        self.plain, self.networks = app, networks
        self.fixed = ProxyFix(app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops)

    def __call__(self, environ, start_response):
        if peer_trusted(environ.get("REMOTE_ADDR"), self.networks):
            return self.fixed(environ, start_response)
        return self.plain(environ, start_response)


def init_app(app) -> None:
    config = app.config
    hops = int(config.get("PROXY_HOPS") or 0)
    if hops > 0 and not config.get("TRUSTED_PROXIES"):
        config["TRUSTED_PROXIES"] = LOOPBACK_PROXIES
    config["TRUSTED_PROXY_NETWORKS"] = parse_networks(config.get("TRUSTED_PROXIES"))
    if hops > 0:
        app.wsgi_app = TrustedProxyFix(app.wsgi_app, hops, config["TRUSTED_PROXY_NETWORKS"])
    allowed = config.get("ALLOWED_HOSTS") or ""
    items = allowed if isinstance(allowed, (list, tuple)) else str(allowed).replace(",", " ").split()
    config["ALLOWED_HOST_NAMES"] = {str(item).strip().lower() for item in items if str(item).strip()}
    app.before_request(check_host)


def host_name(host: str) -> str:
    host = (host or "").strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def check_host():
    """before_request, accounts off only: the Host header must name this machine."""
    if auth_on():
        return None
    name = host_name(request.host)
    if is_loopback(name) or name.endswith(".localhost") or name in current_app.config["ALLOWED_HOST_NAMES"]:
        return None
    raise ApiError(403, "unknown host", "with accounts off this server answers only to 127.0.0.1 and localhost "
                   "(add other names to OTWEB_ALLOWED_HOSTS)")
