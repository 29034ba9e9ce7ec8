"""Progress leaves the trainer batched (protocol.PROGRESS_EVERY_S) with every step's loss row; the
worker's bridge turns the batch back into one metrics row per step and a live progress event."""
from __future__ import annotations

import queue
import time

from support.recording import RecordingSink
from webapp.trainer.callbacks import QueueCallbacks
from webapp.worker.bridge import EventBridge


def step(callbacks, n, loss=None):
    callbacks.progress(global_step=n, max_step=100, epoch=0, max_epoch=1, epoch_step=n, epoch_length=100,
                       loss=loss if loss is not None else 1.0 / n, lr=1e-3)


def drain(q) -> list[dict]:
    found = []
    while not q.empty():
        found.append(q.get_nowait())
    return found


def test_progress_is_batched_with_every_row_and_kept_in_order():
    q = queue.Queue()
    callbacks = QueueCallbacks(q, progress_every_s=0.3)
    for n in range(1, 6):
        step(callbacks, n)
    sent = drain(q)
    assert [e["event"] for e in sent] == ["progress"]  # the first at once, the rest held
    assert [row[0] for row in sent[0]["data"]["rows"]] == [1]

    callbacks.status("sampling")  # another event sends the held progress first
    sent = drain(q)
    assert [e["event"] for e in sent] == ["progress", "status"]
    assert sent[0]["data"]["global_step"] == 5 and [row[0] for row in sent[0]["data"]["rows"]] == [2, 3, 4, 5]
    assert [row[1] for row in sent[0]["data"]["rows"]] == [1 / 2, 1 / 3, 1 / 4, 1 / 5]

    time.sleep(0.35)
    step(callbacks, 6)  # the interval has passed: at once
    assert [e["data"]["global_step"] for e in drain(q)] == [6]
    step(callbacks, 7)
    assert drain(q) == []
    callbacks.flush()  # what the trainer process does before it exits
    assert [row[0] for e in drain(q) for row in e["data"]["rows"]] == [7]


def test_the_bridge_records_every_row_and_derives_speed_and_smoothed_loss():
    q = queue.Queue()
    callbacks = QueueCallbacks(q, progress_every_s=60)
    losses = [1.0, 0.5, 0.25, 0.75, 0.5]
    for n, loss in enumerate(losses, 1):
        step(callbacks, n, loss)
        time.sleep(0.01)
    callbacks.finished(stopped=False, output=None)
    sink = RecordingSink()
    bridge = EventBridge(sink, run_id=1)
    for event in drain(q):
        bridge.handle(event)

    assert [row[:2] for row in sink.rows] == [(n, loss) for n, loss in enumerate(losses, 1)]
    live = [e for e in sink.events if e["event"] == "progress"]
    assert [e["data"]["global_step"] for e in live] == [1, 5] and "rows" not in live[-1]["data"]
    smooth = losses[0]
    for loss in losses[1:]:
        smooth = 0.9 * smooth + 0.1 * loss
    assert abs(live[-1]["data"]["smooth_loss"] - smooth) < 1e-12
    assert 20 < live[-1]["data"]["speed"] < 110  # 4 steps over ~40 ms
    assert abs(live[-1]["data"]["eta_s"] - 95 / live[-1]["data"]["speed"]) < 1e-9
    assert sink.events[-1]["event"] == "finished" and bridge.finished == {"stopped": False, "output": None}
