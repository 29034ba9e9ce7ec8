"""The tree is the architecture: the import rules of DESIGN.md, checked on the source.

- no import cycles among webapp's modules (function-level imports count too);
- a layer table (LAYERS) for every package: what each may import besides itself. The web imports
  protocol, settings, eventlog, store, config and control; the worker the same less store and control,
  and of trainer/ only the trainer process's entry point; control/ (the leader's loop) no Flask; the
  store and the config nothing of the processes; nothing imports web/ but create_app;
- only the trainer process imports torch or the model libraries;
- the checker is tested on made-up edges, and the parser on edges known to exist (it cannot pass
  on an empty graph).
Also: `gunicorn wsgi:app` has an app to serve.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "webapp"
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
    cycles = find_cycles(edges)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


# package -> the packages it may import besides its own (DESIGN.md "Layout"). A package not listed
# here is an error too: a new top-level package needs a row.
LAYERS = {
    "webapp": {"webapp.settings", "webapp.web"},  # create_app: the one importer of web/
    "webapp.protocol": set(),
    "webapp.settings": set(),
    "webapp.entries": {"webapp.protocol", "webapp.settings"},  # the stream entries' schema: worker and web
    "webapp.config": {"webapp.protocol", "webapp.settings"},
    "webapp.store": {"webapp.protocol", "webapp.settings"},
    "webapp.eventlog": {"webapp.protocol", "webapp.settings", "webapp.entries", "webapp.store"},  # EventSink: the web's side
    "webapp.control": {"webapp.protocol", "webapp.settings", "webapp.entries", "webapp.eventlog", "webapp.store", "webapp.config"},
    "webapp.web": {"webapp.protocol", "webapp.settings", "webapp.entries", "webapp.eventlog", "webapp.store", "webapp.config",
                   "webapp.control"},
    "webapp.worker": {"webapp.protocol", "webapp.settings", "webapp.entries", "webapp.eventlog", "webapp.config",
                      "webapp.trainer.process"},  # the trainer process's entry point, nothing else of it
    "webapp.trainer": {"webapp.protocol", "webapp.settings", "webapp.config"},
    "webapp.cli": {"webapp.protocol", "webapp.settings", "webapp.entries", "webapp.eventlog", "webapp.store", "webapp.config",
                   "webapp.control", "webapp.worker", "webapp.trainer"},  # otweb: starts each role
}
NO_FLASK = ("webapp.protocol", "webapp.settings", "webapp.entries", "webapp.config", "webapp.store", "webapp.eventlog",
            "webapp.control", "webapp.worker", "webapp.trainer")


def layer_of(name: str) -> str | None:
    found = [layer for layer in LAYERS if within(name, layer) and layer != "webapp"]
    return max(found, key=len) if found else ("webapp" if name == "webapp" else None)


def broken_rules(edges: dict[str, set[str]]) -> list[str]:
    broken = []
    for name, targets in edges.items():
        layer = layer_of(name)
        if layer is None:
            broken.append(f"{name} is in no layer (add its package to LAYERS)")
            continue
        for target in targets:
            if target.startswith("webapp") and target != "webapp" and not within(target, layer) \
                    and not any(within(target, allowed) for allowed in LAYERS[layer]):
                broken.append(f"{name} imports {target}")
            if target in ("flask", "flask_sse", "flask_login", "flask_limiter") and layer in NO_FLASK:
                broken.append(f"{name} imports {target} (only the web serves requests)")
            if target in MODEL_LIBRARIES and not within(name, "webapp.trainer") \
                    and not within(name, "webapp.cli.train"):
                broken.append(f"{name} imports {target} (only the trainer process may)")
    return broken


def test_the_import_rules_hold():
    assert broken_rules(graph()) == []


def test_the_graph_sees_the_edges_it_must():
    """Not vacuous: the parser finds edges that are known to exist (absolute, relative, from-package
    and function-level imports)."""
    edges = graph()
    assert "webapp.control.dispatch" in edges["webapp.control.loop"]          # from webapp.control.dispatch import
    assert "webapp.store.db" in edges["webapp.store.schema"]                   # from .db import (relative)
    assert "webapp.web" in edges["webapp"]                                      # create_app -> register
    assert "webapp.store" in edges["webapp.eventlog"]                           # inside a function
    assert "webapp.trainer.process" in edges["webapp.worker.warm"]              # from package import module
    assert "flask" in edges["webapp.web.control"] and "torch" in edges["webapp.trainer.builtin.backend"]
    assert sum(len(targets) for targets in edges.values()) > 500


def test_the_rules_check_catches_what_it_should():
    """The checker itself, on made-up edges: each rule fires."""
    edges = {"webapp.worker.loop": {"webapp.web.sse.broker", "webapp.trainer.builtin.backend", "webapp.control.recorder"},
             "webapp.web.runs.pages": {"webapp.worker.loop", "torch"},
             "webapp.store.runs": {"webapp.web.extensions", "webapp.config.train_config"},
             "webapp.trainer.builtin.data": {"webapp.store.runs"},
             "webapp.config.train_config": {"webapp.trainer.builtin.device"},
             "webapp.control.loop": {"flask"},
             "webapp.newthing.x": set()}
    found = broken_rules(edges)
    for expected in ("webapp.worker.loop imports webapp.web.sse.broker",
                     "webapp.worker.loop imports webapp.trainer.builtin.backend",
                     "webapp.worker.loop imports webapp.control.recorder",
                     "webapp.web.runs.pages imports webapp.worker.loop",
                     "webapp.web.runs.pages imports torch (only the trainer process may)",
                     "webapp.store.runs imports webapp.web.extensions",
                     "webapp.store.runs imports webapp.config.train_config",
                     "webapp.trainer.builtin.data imports webapp.store.runs",
                     "webapp.config.train_config imports webapp.trainer.builtin.device",
                     "webapp.control.loop imports flask (only the web serves requests)",
                     "webapp.newthing.x is in no layer (add its package to LAYERS)"):
        assert expected in found, (expected, found)
    assert broken_rules({"webapp.worker.loop": {"webapp.trainer.process", "webapp.eventlog"},
                         "webapp.web.runs.pages": {"webapp.control.heartbeats"}}) == []


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
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
    return cycles


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


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


def test_settings_are_read_only_in_settings():
    """Every setting comes from the environment through webapp/settings.py (read when asked): no other
    module reads os.environ or os.getenv (passing the environment on to a child process is fine)."""
    import re
    reads = re.compile(r"os\.environ\.get\(|os\.getenv\(|os\.environ\[")
    found = [f"{path.relative_to(ROOT)}:{number}" for path in PACKAGE.rglob("*.py") if path.name != "settings.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if reads.search(line)]
    assert found == []
