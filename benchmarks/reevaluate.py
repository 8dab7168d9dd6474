"""Re-evaluates finished runs with the current code and compares figures:
how a change to the library is checked against the tables' recorded runs
without retraining.

  python -m benchmarks.reevaluate segmentation=workdirs/segmentation_table/full/occlusion1/cvae \
      bbox=workdirs/bbox_table/full/image/cvae mnist_quadrant=...

Each TASK=WORKDIR is copied under --scratch (the workdir itself is never
touched) and every evaluator of its config runs again on the saved
parameters (`cvae_jax.evaluate`), and every figure is compared with the
recorded one. Prints one line per run and exits 1 if any figure moved by
more than --rtol (relative).
"""

import json
import shutil
import sys
import time
from pathlib import Path

from absl import flags

from benchmarks import harness
from cvae_jax import evaluate

_SCRATCH = flags.DEFINE_string("scratch", "/tmp/cvae_jax_reevaluate",
                               "Copies of the workdirs go here.")
_RTOL = flags.DEFINE_float("rtol", 0.0, "Largest relative change allowed.")

TASKS = ("mnist_label", "mnist_quadrant", "segmentation", "prob_unet", "bbox")


def reevaluate(task: str, workdir: Path, scratch: Path) -> dict:
  """{figure: (recorded, now)} of the figures that differ, and the seconds."""
  copy = scratch / workdir.name
  if copy.exists():
    shutil.rmtree(copy)
  shutil.copytree(workdir, copy)
  recorded = json.loads((copy / "results.json").read_text())["test"]
  start = time.time()
  now = evaluate.evaluate([f"--workdir={copy}", f"--task=cvae_jax.tasks.{task}"])["test"]
  return {"differ": {k: (v, now.get(k)) for k, v in recorded.items()
                     if v != now.get(k)},
          "figures": len(recorded), "seconds": time.time() - start}


def main(argv):
  failed = False
  for number, spec in enumerate(argv[1:]):
    task, _, workdir = spec.partition("=")
    if task not in TASKS or not workdir:
      sys.exit(f"error: {spec!r}: expected TASK=WORKDIR, TASK one of "
               f"{', '.join(TASKS)}")
    checked = reevaluate(task, Path(workdir).expanduser(),
                         Path(_SCRATCH.value) / str(number))
    worst = max((abs(a - b) / max(abs(a), 1e-12) if b is not None else float("inf")
                 for a, b in checked["differ"].values()), default=0.0)
    failed |= worst > _RTOL.value
    print(f"{spec}: {checked['figures']} figures, {len(checked['differ'])} "
          f"differ (largest relative change {worst:.3g}); "
          f"{checked['seconds']:.0f} s", flush=True)
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  harness.run(main)
