"""Blocking work off the gevent loop.

Under gunicorn's gevent worker every request and SSE stream of a process shares one OS thread, so
a long SQLite query (a chart over 100,000 losses takes ~100 ms) would stall them all. SQLite releases
the GIL while it works, so running the call in gevent's thread pool lets the loop go on. Outside
gevent (the dev server, tests, the worker) the call simply runs here.
"""
from __future__ import annotations


def off_the_loop(function, *args):
    try:
        from gevent import get_hub, monkey
    except ImportError:
        return function(*args)
    if not monkey.is_module_patched("threading"):
        return function(*args)
    return get_hub().threadpool.apply(function, args)
