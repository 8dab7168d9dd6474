"""Re-evaluates finished runs with the current code and compares figures:
how a change to the library is checked against the tables' recorded runs
without retraining.

  python -m benchmarks.reevaluate segmentation=workdirs/segmentation_table/full/occlusion1/cvae \
      bbox=workdirs/bbox_table/full/image/cvae mnist_quadrant=...

Each TASK=WORKDIR is copied under --scratch (the workdir itself is never
touched), its results.json loses the record of which evaluator made which
figure, so the runner evaluates everything again from the saved checkpoint
(training only resumes at its end), and every figure is compared with the
recorded one. A quadrant run's pre-trained baseline is copied with it.
Prints one line per run and exits 1 if any figure moved by more than
--rtol (relative).
"""

import json
import shutil
import sys
import time
from pathlib import Path

from absl import app, flags
import ml_collections

from cvae_jax.tasks import bbox, mnist_label, mnist_quadrant, prob_unet, segmentation

_SCRATCH = flags.DEFINE_string("scratch", "/tmp/cvae_jax_reevaluate",
                               "Copies of the workdirs go here.")
_RTOL = flags.DEFINE_float("rtol", 0.0, "Largest relative change allowed.")

TASKS = {"mnist_label": mnist_label, "mnist_quadrant": mnist_quadrant,
         "segmentation": segmentation, "prob_unet": prob_unet, "bbox": bbox}


def reevaluate(task: str, workdir: Path, scratch: Path) -> dict:
  """{figure: (recorded, now)} of the figures that differ, and the seconds."""
  copy = scratch / workdir.name
  if copy.exists():
    shutil.rmtree(copy)
  shutil.copytree(workdir, copy)
  results = json.loads((copy / "results.json").read_text())
  recorded = results["test"]
  results.pop("figures_by_evaluator", None)  # Evaluate every figure again.
  (copy / "results.json").write_text(json.dumps(results))
  config = ml_collections.ConfigDict(results["config"])
  if task == "mnist_quadrant" and config.get("baseline_workdir"):
    baseline = Path(config.baseline_workdir)
    shutil.copytree(baseline, scratch / "baseline", dirs_exist_ok=True)
    config.baseline_workdir = str(scratch / "baseline")
  start = time.time()
  now = TASKS[task].train_and_evaluate(config, copy)["test"]
  return {"differ": {k: (v, now.get(k)) for k, v in recorded.items()
                     if v != now.get(k)},
          "figures": len(recorded), "seconds": time.time() - start}


def main(argv):
  failed = False
  for number, spec in enumerate(argv[1:]):
    task, _, workdir = spec.partition("=")
    if task not in TASKS or not workdir:
      raise app.UsageError(f"{spec!r}: expected TASK=WORKDIR, TASK one of "
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
  app.run(main)
