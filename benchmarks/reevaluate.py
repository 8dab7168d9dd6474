"""Re-evaluates finished runs with the current code and compares figures:
a change to the library checked against the tables' runs without retraining.

  python -m benchmarks.reevaluate segmentation=workdirs/segmentation_table/full/occlusion1/cvae \
      bbox=workdirs/bbox_table/full/image/cvae mnist_quadrant=...

Each [TASK=]WORKDIR (TASK: a cvae_jax.tasks module; default: its
results.json's) is copied under --scratch, its evaluators run again on the
saved parameters (`cvae_jax.evaluate`) and every figure is compared with the
recorded one: one line per run; exit 1 if one moved by more than --rtol.
"""

import json
import shutil
import sys
import time
from pathlib import Path

from absl import flags

from benchmarks import harness
from cvae_jax import cli, evaluate
from cvae_jax.errors import UserError

_SCRATCH = flags.DEFINE_string("scratch", "/tmp/cvae_jax_reevaluate",
                               "Copies of the workdirs go here.")
_RTOL = flags.DEFINE_float("rtol", 0.0, "Largest relative change allowed.")


def main(argv):
  failed = False
  for number, spec in enumerate(argv[1:]):
    task, _, workdir = spec.rpartition("=")
    workdir = Path(workdir).expanduser()
    copy = Path(_SCRATCH.value) / str(number) / workdir.name
    start = time.time()
    try:  # A workdir with no results.json is refused before it is copied.
      recorded = json.loads((workdir / "results.json").read_text())["test"]
      shutil.rmtree(copy, ignore_errors=True)
      shutil.copytree(workdir, copy)
      now = evaluate.evaluate([f"--workdir={copy}", *(
          [f"--task=cvae_jax.tasks.{task}"] if task else [])])["test"]
    except (OSError, UserError) as e:
      cli.fail(f"{spec}: {e}")
    differ = {k: (v, now.get(k)) for k, v in recorded.items() if v != now.get(k)}
    worst = max((abs(a - b) / max(abs(a), 1e-12) if b is not None else float("inf")
                 for a, b in differ.values()), default=0.0)
    failed |= worst > _RTOL.value
    print(f"{spec}: {len(recorded)} figures, {len(differ)} differ (largest "
          f"relative change {worst:.3g}); {time.time() - start:.0f} s", flush=True)
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  harness.run(main)
