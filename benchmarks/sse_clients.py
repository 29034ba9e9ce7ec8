"""A pool of SSE clients in one asyncio process (started by common.SSEClients).

    sse_clients.py URL PATH N OUT [--until-run-end | --until-text TEXT] [--max-s S]

Each client speaks raw HTTP/1.0 (so no chunked framing) and records, for every frame with an id:
[seq, event name, receive time (time.time()), the event's own `time` (JSON streams), global_step].
It prints READY once every client got its first (retry) frame, i.e. the web's broker holds it,
and PROGRESS when the first client sees the first progress event.
On SIGINT, or when the stop condition or --max-s is reached, it writes
{"records": [one list per client], "cpu_s": its own CPU seconds} to OUT.
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


async def _client(url: str, path: str, state: dict, index: int) -> None:
    host, port = url.split("//")[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=2 ** 22)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    records, parse_json = state["records"][index], path.startswith("/api/")
    ready = False
    try:
        while True:
            frame = await reader.readuntil(b"\n\n")
            received = time.time()
            if not ready:  # the retry frame: the broker holds this client now
                ready = True
                state["ready"] += 1
                if state["ready"] == len(state["records"]):
                    print("READY", flush=True)
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
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


async def _clients(args) -> None:
    n = int(args[2])
    state = {"records": [[] for _ in range(n)], "ready": 0, "told_progress": False,
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
    out.write_text(json.dumps({"records": state["records"], "cpu_s": usage.ru_utime + usage.ru_stime}))


if __name__ == "__main__":
    asyncio.run(_clients(sys.argv[1:]))
