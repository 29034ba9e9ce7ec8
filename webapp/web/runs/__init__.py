"""Runs: history, run pages, compare, the queue panel (``pages``), downloads of a run's files (``downloads``), the
JSON API of runs and the queue (``api``). Services beside them: ``actions`` (start, enqueue, stop, resume, clone,
delete), ``views`` (a run as people see it), ``stages``, ``charts``, ``compare``, ``files``, ``log``, ``banner``."""
