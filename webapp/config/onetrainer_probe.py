"""Run as ``python -m webapp.config.onetrainer_probe CHECKOUT``: prints OneTrainer's table of output
formats per (model type, method) as JSON, read from the checkout's own enum modules.

A process of its own, so that the process asking (the web) never puts OneTrainer's ``modules``
package on its path or in its ``sys.modules``: the enums import only each other (no torch), and this
process ends once it has answered."""
from __future__ import annotations

import json
import sys


def formats_table(checkout: str) -> list[list]:
    sys.path.insert(0, checkout)
    from modules.util.enum.ModelType import ModelType  # OneTrainer's, from the checkout named
    from modules.util.enum.TrainingMethod import TrainingMethod

    table = []
    for kind in ModelType:
        for way in TrainingMethod:
            try:
                table.append([kind.name, way.name, [f.name for f in kind.supported_output_formats(way)]])
            except ValueError:
                table.append([kind.name, way.name, []])
    return table


def main(argv: list[str]) -> int:
    try:
        print(json.dumps({"table": formats_table(argv[1])}))
    except (ImportError, AttributeError, IndexError) as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
