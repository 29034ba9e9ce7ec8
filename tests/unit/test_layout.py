"""The tests' own layout: each test file in the folder of its kind (unit/, e2e/, browser/, each with
its conftest), the shared helpers imported from tests/support (never from a conftest or a flat
helper module), unit tests that start no server, worker or browser, and one free_port and one
polling loop for the tests, the benchmarks and the scripts."""
from __future__ import annotations

import ast
from pathlib import Path

from support.paths import ROOT

TESTS = ROOT / "tests"
KINDS = ("unit", "e2e", "browser")
OLD_HELPERS = {"conftest", "servers", "stack", "fleet", "browser", "recorder", "onetrainer_env"}
SPAWNING = {"support.servers", "support.stack", "support.fleet", "support.browser", "selenium"}


def python_files(*folders: Path) -> list[Path]:
    return [path for folder in folders for path in folder.rglob("*.py") if "onetrainer_standin" not in path.parts]


def imported(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def test_every_test_file_is_in_the_folder_of_its_kind():
    assert sorted(path.name for path in TESTS.glob("test_*.py")) == []
    for kind in KINDS:
        assert (TESTS / kind / "conftest.py").is_file(), kind
        assert list((TESTS / kind).glob("test_*.py")), kind


def test_helpers_come_from_support():
    wrong = {f"{path.relative_to(TESTS)}: {module}" for path in python_files(TESTS)
             for module in imported(path) if module in OLD_HELPERS}
    assert not wrong


def test_unit_tests_start_no_server_worker_or_browser():
    unit = sorted((TESTS / "unit").glob("test_*.py"))
    assert unit
    wrong = set()
    for path in unit:
        wrong |= {f"{path.name} imports {module}" for module in imported(path)
                  if module.split(".")[0] == "selenium" or module in SPAWNING}
        wrong |= {f"{path.name}: {node.name} takes {arg.arg}" for node in ast.parse(path.read_text()).body
                  if isinstance(node, ast.FunctionDef) for arg in node.args.args if arg.arg in ("stack", "driver")}
    assert not wrong


def test_one_free_port_and_one_polling_loop():
    own = {f"{path.relative_to(ROOT)}: {node.name}"
           for path in python_files(TESTS, ROOT / "benchmarks", ROOT / "scripts") if "support" not in path.parts
           for node in ast.parse(path.read_text()).body
           if isinstance(node, ast.FunctionDef) and node.name in ("free_port", "wait_for")}
    assert not own
