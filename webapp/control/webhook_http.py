"""A webhook's one request, guarded against server-side request forgery, and its signature.

Only hosts an admin listed (OTWEB_WEBHOOK_HOSTS) are reachable. The name is resolved here and every
address it resolves to is checked: loopback (unless OTWEB_WEBHOOK_ALLOW_LOOPBACK, for tests),
link-local (169.254.169.254, the cloud metadata address, among them), multicast, unspecified and
reserved addresses are refused; the connection then goes to the address that was checked, so a
second DNS answer cannot swap it (rebinding). Redirects are not followed (http.client never does),
every request has a timeout, and at most MAX_RESPONSE bytes of an answer are read.

A generic webhook is signed: ``X-OTWeb-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>">`` with the subscription's secret; a receiver recomputes it and refuses a t older than
its replay window (``verify`` is the reference; the README shows it).
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import socket
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from webapp.settings import webhook_allow_loopback, webhook_hosts

TIMEOUT_S = 5.0
MAX_RESPONSE = 64 * 1024
SIGNATURE_HEADER = "X-OTWeb-Signature"
REPLAY_WINDOW_S = 300


class Refused(ValueError):
    """A destination the guard will not reach; the message says why (shown to the user)."""


@dataclass
class Answer:
    status: int
    body: bytes


def host_listed(host: str, hosts) -> bool:
    return any(fnmatchcase(host, pattern) for pattern in hosts)


def check_url(url: str, hosts=None) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL the guard allows by its form and host list (no DNS yet)."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("a webhook URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise Refused("a webhook URL must not carry a user or password")
    host = parts.hostname.lower().rstrip(".")
    listed = webhook_hosts() if hosts is None else hosts
    if not host_listed(host, listed):
        raise Refused(f"{host} is not an approved webhook host (the admin lists them in OTWEB_WEBHOOK_HOSTS)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise Refused(f"bad port: {exc}") from None
    return parts.scheme, host, port


def address_refused(address: str, allow_loopback: bool) -> str | None:
    """Why an address may not be reached, or None."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    for refused, words in ((ip.is_link_local, "a link-local address (cloud metadata among them)"),
                           (ip.is_multicast, "a multicast address"), (ip.is_unspecified, "an unspecified address"),
                           (ip.is_reserved, "a reserved address")):
        if refused:
            return words
    return None


def resolve_checked(host: str, port: int, allow_loopback: bool | None = None) -> str:
    """The address to connect to: every address the name resolves to must pass (a name with one
    bad answer among good ones is refused: which one a client would take is not ours to know)."""
    allow = webhook_allow_loopback() if allow_loopback is None else allow_loopback
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Refused(f"{host} does not resolve: {exc}") from None
    addresses = [info[4][0] for info in infos]
    for address in addresses:
        why = address_refused(address, allow)
        if why:
            raise Refused(f"{host} resolves to {address}, {why}")
    return addresses[0]


def post(url: str, body: bytes, headers: dict, hosts=None, allow_loopback: bool | None = None,
         timeout: float = TIMEOUT_S) -> Answer:
    """POST to a guarded destination. Raises Refused (the guard) or OSError (the network)."""
    scheme, host, port = check_url(url, hosts)
    address = resolve_checked(host, port, allow_loopback)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    conn = kind(host, port, timeout=timeout)  # Host header and TLS name stay the name ...
    # ... but the socket goes to the address checked above, not to a second lookup's answer
    conn._create_connection = lambda _addr, conn_timeout, source=None: socket.create_connection(
        (address, port), conn_timeout, source)
    try:
        conn.request("POST", target, body=body, headers={**headers, "Content-Length": str(len(body))})
        response = conn.getresponse()
        return Answer(response.status, response.read(MAX_RESPONSE))
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer: {exc!r}") from None
    finally:
        conn.close()


def sign(secret: str, body: bytes, at: int | None = None) -> str:
    """The signature header's value for this body."""
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def verify(secret: str, header: str, body: bytes, now: float | None = None, window: int = REPLAY_WINDOW_S) -> bool:
    """A receiver's check: the signature matches and its time is within the replay window."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        at = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - at) > window:
        return False
    return hmac.compare_digest(sign(secret, body, at), header.strip())
