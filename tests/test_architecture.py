"""The tree is the architecture: the import rules of DESIGN.md, checked on the source.

- no import cycles among webapp's modules (function-level imports count too);
- the web and the worker import only protocol, settings, eventlog, store and config of the rest
  (and their own package); neither imports the other;
- the worker reaches trainer/ only through the trainer process's entry point (trainer.process);
- nothing imports web/ but create_app (webapp/__init__.py);
- the web, the worker, the store and the config never import torch or the model libraries.
Also: `gunicorn wsgi:app` has an app to serve.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "webapp"
SHARED = ("webapp.protocol", "webapp.settings", "webapp.eventlog", "webapp.store", "webapp.config")
MODEL_LIBRARIES = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "bitsandbytes")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every webapp module (or outside top-level package) that ``name`` imports, anywhere in it."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {target if target.startswith("webapp") else target.split(".")[0] for target in found}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_no_import_cycles():
    edges = {name: {t for t in targets if t.startswith("webapp")} for name, targets in graph().items()}
    # importing webapp.x.y runs webapp and webapp.x first: a package's __init__ is not an edge here
    # unless named, so cycles are among the modules as written
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if target == node or target not in edges:
                continue
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def broken_rules(edges: dict[str, set[str]]) -> list[str]:
    broken = []
    for name, targets in edges.items():
        for target in targets:
            if within(name, "webapp.worker") and within(target, "webapp.store"):
                broken.append(f"{name} imports {target} (a worker shares only Redis with the web)")
            if within(name, "webapp.web") or within(name, "webapp.worker"):
                own = "webapp.web" if within(name, "webapp.web") else "webapp.worker"
                if target.startswith("webapp") and not within(target, own) and target != "webapp" \
                        and not any(within(target, shared) for shared in SHARED) \
                        and not (own == "webapp.web" and within(target, "webapp.control")) \
                        and not (own == "webapp.worker" and target == "webapp.trainer.process"):
                    broken.append(f"{name} imports {target}")
            if within(target, "webapp.web") and not within(name, "webapp.web") and name != "webapp":
                broken.append(f"{name} imports {target} (only create_app may)")
            if within(name, "webapp.control") and (target in ("flask", "flask_sse") or any(
                    within(target, other) for other in ("webapp.web", "webapp.worker", "webapp.trainer"))):
                broken.append(f"{name} imports {target} (the control plane's loop runs without Flask)")
            if target in MODEL_LIBRARIES and not within(name, "webapp.trainer") \
                    and not within(name, "webapp.cli.train"):
                broken.append(f"{name} imports {target} (only the trainer process may)")
    return broken


def test_the_import_rules_hold():
    assert broken_rules(graph()) == []


def test_the_rules_check_catches_what_it_should():
    """The checker itself, on made-up edges: each rule fires."""
    edges = {"webapp.worker.loop": {"webapp.web.sse.broker", "webapp.trainer.builtin.backend"},
             "webapp.web.runs": {"webapp.worker.loop", "torch"},
             "webapp.store.runs": {"webapp.web.extensions"}}
    found = broken_rules(edges)
    assert "webapp.worker.loop imports webapp.web.sse.broker" in found
    assert "webapp.worker.loop imports webapp.trainer.builtin.backend" in found
    assert "webapp.web.runs imports webapp.worker.loop" in found
    assert "webapp.web.runs imports torch (only the trainer process may)" in found
    assert "webapp.store.runs imports webapp.web.extensions (only create_app may)" in found
    assert "webapp.worker.loop imports webapp.store.runs (a worker shares only Redis with the web)" in \
        broken_rules({"webapp.worker.loop": {"webapp.store.runs"}})


def test_the_worker_process_loads_neither_flask_nor_torch():
    """What actually loads: the worker's modules bring in no Flask, flask-sse or torch, and not the
    record (no webapp.store, no sqlite3): a worker host has no database to open."""
    code = ("import sys; import webapp.worker.loop, webapp.worker.supervisor, webapp.eventlog; "
            "print(sorted(m for m in ('flask', 'flask_sse', 'torch', 'diffusers', 'sqlite3', 'webapp.store')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_wsgi_serves_the_app(tmp_path, redis_url):
    code = "import wsgi; print(type(wsgi.app).__name__, len(wsgi.app.url_map._rules) > 50)"
    env = {"PATH": "/usr/bin:/bin", "OTWEB_WORKSPACE": str(tmp_path / "ws"),
           "OTWEB_CONFIG_DIR": str(tmp_path / "configs"), "REDIS_URL": redis_url}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert out.stdout.strip() == "Flask True", out.stderr
