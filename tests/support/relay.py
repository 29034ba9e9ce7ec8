"""A TCP relay that delays every byte by a fixed time each way: a slow link between a worker and
Redis (latency only; bandwidth is whatever the machine gives). Used by the slow-link test and
benchmarks/bench_slow_link.py.

    with DelayRelay(upstream_port, delay_s=0.1) as relay:
        url = f"redis://127.0.0.1:{relay.port}/0"
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time

CHUNK = 65536


class DelayRelay:
    def __init__(self, upstream_port: int, delay_s: float, host: str = "127.0.0.1"):
        self.upstream, self.delay_s, self.host = (host, upstream_port), delay_s, host
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delay-relay", daemon=True)

    def __enter__(self) -> DelayRelay:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the relay did not start")
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        self.port = listener.getsockname()[1]
        self.loop.run_until_complete(asyncio.start_server(self._connection, sock=listener))
        self._ready.set()
        self.loop.run_forever()

    async def _connection(self, client_reader, client_writer) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pipe(client_reader, upstream_writer),
                             self._pipe(upstream_reader, client_writer), return_exceptions=True)

    async def _pipe(self, reader, writer) -> None:
        """Each chunk is delivered delay_s after it was read, in order: a reader and a writer joined
        by a queue, so that chunks in flight overlap (a delay, not a throttle)."""
        pending: asyncio.Queue = asyncio.Queue()

        async def deliver():
            while (item := await pending.get()) is not None:
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        delivering = asyncio.ensure_future(deliver())
        try:
            while data := await reader.read(CHUNK):
                pending.put_nowait((time.monotonic() + self.delay_s, data))
        except OSError:
            pass
        finally:
            pending.put_nowait(None)
            try:
                await delivering
            except OSError:
                pass
