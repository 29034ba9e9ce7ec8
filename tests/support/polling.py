"""The one polling loop of the tests, the benchmarks and the scripts."""
from __future__ import annotations

import time


def wait_for(predicate, timeout: float = 60, what: str = "condition", every: float = 0.1, ignore: tuple = ()):
    """predicate()'s first true value, polled every ``every`` s; TimeoutError naming ``what``.

    An exception of a type in ``ignore`` (say a connection refused while a server starts) counts as
    not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except ignore:
            value = None
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"not in {timeout} s: {what}")
