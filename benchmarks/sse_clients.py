"""A pool of SSE clients in one asyncio process (started by common.SSEClients).

    sse_clients.py URL PATH N OUT [--until-run-end | --until-text TEXT] [--max-s S] [--light]

Each client speaks raw HTTP/1.0 (so no chunked framing) and records, for every frame with an id:
[seq, event name, receive time (time.time()), the event's own `time` (JSON streams), global_step].
--light (for many clients, e.g. 1,000): only [seq, receive time], the id found in the raw bytes, no
decoding or JSON parsing, so that the client process spends as little CPU per frame as it can.
It prints READY once every client got its first (retry) frame, i.e. the web's broker holds it,
and PROGRESS when the first client sees the first progress event.
On SIGINT, or when the stop condition or --max-s is reached, it writes
{"records": [one list per client], "cpu_s": its own CPU seconds, "connected": clients whose stream
opened, "errors": {error: count} for those that failed or ended early} to OUT.
The soft RLIMIT_NOFILE is raised to the hard limit first (1,000 sockets exceed the usual 1,024).
"""
from __future__ import annotations

import asyncio
import json
import resource
import signal
import sys
import time
from pathlib import Path

TERMINAL_STATES = ("completed", "stopped", "failed", "interrupted")


def _error(state: dict, exc: BaseException, ready: bool) -> None:
    name = type(exc).__name__
    state["errors"][name] = state["errors"].get(name, 0) + 1
    if not ready:  # READY still comes, once every client is either held or has failed
        state["failed"] += 1
        _tell_ready(state)


def _tell_ready(state: dict) -> None:
    if state["ready"] + state["failed"] == len(state["records"]):
        print("READY", flush=True)


class _LightClient(asyncio.Protocol):
    """--light: a bare protocol (no StreamReader): frames found with bytes.find, only ids read."""

    def __init__(self, state: dict, index: int, request: bytes):
        self.state, self.records, self.request = state, state["records"][index], request
        self.buffer, self.head, self.ready = b"", False, False
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        received = time.time()
        buffer = self.buffer + data if self.buffer else data
        if not self.head:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
                self._end(ConnectionError(buffer.split(b"\r\n", 1)[0].decode(errors="replace")))
                return
            self.head, buffer = True, buffer[end + 4:]
            self.state["connected"] += 1
        start = 0
        while (end := buffer.find(b"\n\n", start)) >= 0:
            if not self.ready:  # the retry frame: the broker holds this client now
                self.ready = True
                self.state["ready"] += 1
                _tell_ready(self.state)
            else:
                at = buffer.rfind(b"id: ", start, end)
                if at >= 0 and (at == start or buffer[at - 1] == 10):
                    self.records.append([int(buffer[at + 4:end]), received])
            start = end + 2
        self.buffer = buffer[start:]

    def _end(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(exc)
        self.transport.close()

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(exc or asyncio.IncompleteReadError(self.buffer, None))


async def _light_client(url: str, path: str, state: dict, index: int) -> None:
    host, port = url.split("//")[1].split(":")
    request = f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    try:
        transport, client = await loop.create_connection(lambda: _LightClient(state, index, request), host, int(port))
    except OSError as exc:
        _error(state, exc, False)
        return
    try:
        exc = await client.done
        if exc is not None:
            _error(state, exc, client.ready)
    finally:
        transport.close()


async def _client(url: str, path: str, state: dict, index: int) -> None:
    host, port = url.split("//")[1].split(":")
    if state["light"]:
        return await _light_client(url, path, state, index)
    try:
        reader, writer = await asyncio.open_connection(host, int(port), limit=2 ** 22)
    except OSError as exc:
        _error(state, exc, False)
        return
    records, parse_json = state["records"][index], path.startswith("/api/")
    ready = False
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        state["connected"] += 1
        while True:
            frame = await reader.readuntil(b"\n\n")
            received = time.time()
            if not ready:  # the retry frame: the broker holds this client now
                ready = True
                state["ready"] += 1
                _tell_ready(state)
                continue
            fields = dict(line.partition(": ")[::2] for line in frame.decode().split("\n") if line and line[0] != ":")
            if "id" not in fields:
                continue
            event = json.loads(fields["data"]) if parse_json and "data" in fields else {}
            data = event.get("data") or {}
            records.append([int(fields["id"]), fields.get("event"), received, event.get("time"),
                            data.get("global_step")])
            if index == 0 and fields.get("event") == "progress" and not state["told_progress"]:
                state["told_progress"] = True
                print("PROGRESS", flush=True)  # a benchmark may time its run from here
            if state["until_run_end"] and fields.get("event") == "run" and data.get("state") in TERMINAL_STATES:
                return
            if state["until_text"] and data.get("text") == state["until_text"]:
                return
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError) as exc:
        _error(state, exc, ready)
        return
    finally:
        writer.close()


async def _clients(args) -> None:
    n = int(args[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    state = {"records": [[] for _ in range(n)], "ready": 0, "told_progress": False, "light": "--light" in args,
             "connected": 0, "failed": 0, "errors": {},
             "until_run_end": "--until-run-end" in args,
             "until_text": args[args.index("--until-text") + 1] if "--until-text" in args else None}
    max_s = float(args[args.index("--max-s") + 1]) if "--max-s" in args else 90
    out = Path(args[3])
    tasks = []
    for i in range(n):  # connect a few at a time, as browsers would, not in one burst
        tasks.append(asyncio.ensure_future(_client(args[0], args[1], state, i)))
        if i % 10 == 9:
            await asyncio.sleep(0.01)
    stopper = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, lambda: stopper.done() or stopper.set_result(1))
    await asyncio.wait([asyncio.gather(*tasks, return_exceptions=True), stopper], timeout=max_s,
                       return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.write_text(json.dumps({"records": state["records"], "cpu_s": usage.ru_utime + usage.ru_stime,
                               "connected": state["connected"], "errors": state["errors"]}))


if __name__ == "__main__":
    asyncio.run(_clients(sys.argv[1:]))
