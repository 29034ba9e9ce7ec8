"""gunicorn for OneTrainer Web: gevent workers (SSE holds a connection per open browser).
Run: gunicorn -c deploy/gunicorn.conf.py wsgi:app  (no --preload: gevent patches per worker)"""
import os

bind = os.environ.get("OTWEB_BIND", "127.0.0.1:8000")   # nginx in front; never 0.0.0.0 with accounts off


def _refuse_open_bind(address: str) -> None:
    """The same check as `otweb serve/web`: a non-loopback bind needs accounts on."""
    from webapp.settings import Settings
    from webapp.store.accounts import refuse_open_bind
    host = "127.0.0.1" if address.startswith("unix:") else address.rsplit(":", 1)[0].strip("[]")
    message = refuse_open_bind(host, Settings.from_env().database)
    if message:
        raise SystemExit(f"OTWEB_BIND={address}: {message}")


_refuse_open_bind(bind)
worker_class = "gevent"
workers = int(os.environ.get("OTWEB_WEB_WORKERS", "2"))
worker_connections = 2000          # open SSE streams + requests, per worker
# each one is an open file: the app raises its soft RLIMIT_NOFILE to the hard limit (up to 65,536) as
# it starts (webapp.web.sse.broker.raise_open_file_limit); systemd's hard limit is ample, else LimitNOFILE=
timeout = 60                       # gevent workers heartbeat on their own; streams are not cut by this
graceful_timeout = 5
keepalive = 5
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = "127.0.0.1"  # the proxy; ProxyFix (OTWEB_PROXY_HOPS) reads its X-Forwarded-*
control_socket_disable = True
