"""Data parallelism on this box: steps/s and samples/s of the tiny demo LoRA on 1 and 2 CPU ranks
(gloo) at the same per-rank batch, and the time each optimizer step spends averaging gradients.

On a CPU the ranks share the same cores, so this shows the overhead of the distributed machinery
(process group, sharding, the all-reduce, the per-step broadcast), not a speed-up; the speed-up is
measured on GPUs by bench_ranks_gpu.py.

    .venv/bin/python benchmarks/bench_ranks.py [--batch 2] [--epochs 3]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from common import BENCH_DIR, PY, ROOT, machine, table, write_results
from ranks import HEADERS, measure, rows, scaling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2, help="batch size per rank")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the 1-rank run (×ranks for more)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ranks-") as tmp:
        workspace, configs = Path(tmp) / "workspace", Path(tmp) / "configs"
        subprocess.run([PY, str(BENCH_DIR / "common.py"), "build-demo", str(workspace), str(configs)],
                       cwd=ROOT, check=True)
        config = json.loads((configs / "demo.json").read_text())
        config.update(batch_size=args.batch, train_device="cpu", sample_after_unit="NEVER",
                      backup_after_unit="NEVER", backup_before_save=False)
        results = [measure({**config, "epochs": args.epochs * world}, world, workspace,
                           workspace / "runs" / f"ranks{world}") for world in (1, 2)]
    print(table(HEADERS, rows(results)))
    efficiency = scaling(results)
    print(f"\nscaling efficiency (samples/s on 2 ranks / 2 × on 1): {efficiency:.2f} "
          "(on a shared CPU: the overhead, not a speed-up)")
    write_results("bench_ranks", {"machine": machine(), "results": results, "scaling_efficiency": efficiency})


if __name__ == "__main__":
    main()
