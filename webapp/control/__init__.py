"""The control plane's own work, which one leading web process runs (no Flask here): the loop
(``loop``), the recorder of the workers' streams (``recorder``), the dispatcher of queued runs
(``dispatch``, ``backup_carry``) and liveness (``heartbeats``: every reader of a worker's heartbeat asks
it). The web starts the loop (``webapp/web/control.py``) and reads liveness; the worker never imports it."""
