"""Where the real OneTrainer and its environment are, for the tests that run it.

The checkout is ../shared/third_party/OneTrainer (an unmodified snapshot, AGPL-3.0: imported from
there, never copied); its environment is .venv-onetrainer, built by scripts/setup_onetrainer.sh
(the test command runs it). When either is missing the tests fail and say how to get it: a test
that cannot find OneTrainer must never pass silently.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.paths import ROOT

CHECKOUT = Path(os.environ.get("OTWEB_TEST_ONETRAINER_DIR", ROOT.parent / "shared/third_party/OneTrainer")).resolve()
VENV_PYTHON = ROOT / ".venv-onetrainer/bin/python"


def checkout() -> Path:
    if not (CHECKOUT / "modules/util/enum/ModelType.py").is_file():
        pytest.fail(f"OneTrainer is not at {CHECKOUT}: these tests need the snapshot in ../shared/third_party "
                    "(or OTWEB_TEST_ONETRAINER_DIR set to a checkout)", pytrace=False)
    return CHECKOUT


def venv_python() -> Path:
    if not VENV_PYTHON.is_file():
        pytest.fail(f"{VENV_PYTHON} is missing: build it with ./scripts/setup_onetrainer.sh "
                    "(./scripts/setup.sh --test runs it); its pip error says which package could not be had",
                    pytrace=False)
    return VENV_PYTHON
