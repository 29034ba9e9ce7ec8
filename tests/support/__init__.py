"""What the tests, the benchmarks and scripts/ share: polling (polling.py), free ports (ports.py),
an SSE reader (sse.py), the project's paths and the database file (paths.py), the app as the
tests build it (apps.py), real servers (servers.py), the whole product (stack.py), a fleet
(fleet.py), chromium (browser.py), the demo config cut short (demo.py), accounts (accounts.py),
recording callbacks and sinks (recording.py), the real OneTrainer's whereabouts (onetrainer_env.py)
and a stand-in for it (onetrainer_standin/).

tests/ is on sys.path (pyproject's pytest `pythonpath`; benchmarks/common.py and the scripts put
it there themselves), so each is ``support.<module>``. The modules import only what they use:
a benchmark that wants a port does not load selenium."""
