"""The durable record (SQLite, on the control plane's own disk): runs and the queue, their
numbered events, every loss value, samples' metadata, accounts.

Plain functions over a ``sqlite3.Connection``, one module per concern: ``db`` (connection,
transactions), ``schema``, ``runs`` (rows, queue, history), ``events`` (the numbered log),
``metrics`` (losses and the chart's downsampling, summarised by ``loss_summary``), ``samples``,
``model_versions`` (and their lineage), ``assignments`` (which worker holds a run; the recorder's
idempotence key), ``uploads`` (the files workers sent, with their sha256) and ``accounts``. The common
calls are re-exported here, so a caller writes ``store.get_run(conn, id)``;
the gallery's and the accounts' own calls are reached as ``store.samples.grid(...)`` and
``store.accounts.add_user(...)``.
"""
from . import accounts, compaction, dataset_manifests, disk_use, loss_summary, db, events, assignments, metrics, model_versions, notifications, run_columns, run_selection, runs, samples, schema, uploads  # noqa: F401
from .db import connect, setting, transaction  # noqa: F401
from .events import append_event, chart_version, events_since, first_events, kept_files, last_seq, recent_events  # noqa: F401
from .metrics import append_metrics, loss_buckets, recent_losses  # noqa: F401
from .metrics import SUMMARY_PER_BUCKET  # noqa: F401
from .runs import (HISTORY_FILTERS, active_runs, cancel_queued, create_run, delete_run_rows,  # noqa: F401
                   distinct_values, get_run, has_queued, history, latest_run, mark_stop_requested,
                   move_in_queue, playground_sessions, queue_paused, queued_runs, recent_finished, reorder_queue,
                   requeue_for_resume, run_config, run_dict, run_standing, set_queue_paused,
                   set_started_by, timeline)
from .samples import get_sample, list_samples  # noqa: F401
from .schema import init_schema  # noqa: F401
