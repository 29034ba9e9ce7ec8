"""End-to-end tests: spawned processes (the web under gunicorn, workers, trainers, ranks, Redis
servers, nginx), driven through HTTP, SSE and the record; the shared `stack` fixture is in
tests/conftest.py (the browser tests use it too). Every test here is marked `slow`."""
from __future__ import annotations

from pathlib import Path

import pytest

from support.marks import mark_folder_slow


@pytest.hookimpl(tryfirst=True)  # before -m selects by the marks
def pytest_collection_modifyitems(items):
    mark_folder_slow(items, Path(__file__).parent)
