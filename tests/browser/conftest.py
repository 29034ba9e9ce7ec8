"""Browser tests: Debian's headless chromium through Selenium on the real servers. What only they
use: the driver, one chromium per test module. Every test here is marked `slow`."""
from __future__ import annotations

from pathlib import Path

import pytest

from support.marks import mark_folder_slow


@pytest.hookimpl(tryfirst=True)  # before -m selects by the marks
def pytest_collection_modifyitems(items):
    mark_folder_slow(items, Path(__file__).parent)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """One headless chromium per test module."""
    from support.browser import chromium
    with chromium(tmp_path_factory.mktemp("chromium")) as browser:
        yield browser
