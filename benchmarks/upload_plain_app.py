"""The benchmark's server for bench_dataset_upload.py: the product's app (create_app, as wsgi.py
serves it) plus one plain route of the benchmark's own, `PUT /bench/plain/<name>`, that writes the
request's body to a file in 1 MiB blocks and nothing else: the baseline the product's upload path is
measured against, in the same gunicorn + gevent process."""
from __future__ import annotations

import os
from pathlib import Path

from flask import request

from webapp import create_app
from webapp.web.auth.limits import limiter

app = create_app()
PLAIN = Path(app.config["WORKSPACE"]) / "plain-put"


@limiter.exempt
def plain_put(name: str):
    request.max_content_length = 1 << 34  # None would mean the app-wide cap
    PLAIN.mkdir(exist_ok=True)
    with open(PLAIN / os.path.basename(name), "wb") as out:
        while block := request.stream.read(1 << 20):
            out.write(block)
    return "", 204


app.add_url_rule("/bench/plain/<name>", "bench_plain_put", plain_put, methods=["PUT"])
