"""The README's results table: the reference run (train.mnist_label with its
defaults) for several seeds, then mean and spread of the final figures.

  python -m benchmarks.mnist_label_seeds --seeds=0,1,2 --root=workdirs/seeds

Each seed is the main command with --config.seed=S in its own workdir (a
finished one is read back, an interrupted one resumes).
"""

import json
import subprocess
import sys
from pathlib import Path

from absl import flags
import numpy as np

from benchmarks import harness
from cvae_jax import cli
from train.configs import mnist_label as mnist_label_config

_SEEDS = harness.define_list("seeds", ["0", "1", "2"], "Seeds to run.", minimum=0)
_ROOT = flags.DEFINE_string("root", "workdirs/seeds", "One workdir per seed here.")
_EXTRA = flags.DEFINE_multi_string(
    "override", [], "Extra --config.KEY=VALUE flags of the main command, KEY "
    "a key of train/configs/mnist_label.py.")
flags.register_validator(
    "override", lambda values: all(
        v.startswith("--config.") and "=" in v and cli.unknown_key(
            v[len("--config."):].split("=")[0], mnist_label_config.get_config())
        is None for v in values),
    message="--override takes --config.KEY=VALUE, KEY a key of "
    "train/configs/mnist_label.py")

# (figure under results.json's "test", or a top-level key) -> its row name.
FIGURES = (("test_loss_reference_unit", "test loss (reference unit)"),
           ("negative_elbo", "test -ELBO (nats/image)"),
           ("importance_sampled", "test IS-NLL K=1000 (nats/image)"),
           ("train_seconds_this_run", "train wall time incl. compile and evals (s)"))


def main(argv):
  del argv
  results = {}
  for seed in _SEEDS.value:
    workdir = Path(_ROOT.value) / f"seed_{seed}"
    command = [sys.executable, "-m", "train.mnist_label",
               "--config=train/configs/mnist_label.py", f"--workdir={workdir}",
               f"--config.seed={seed}", *_EXTRA.value]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    results[seed] = json.loads((workdir / "results.json").read_text())

  values = {name: [{**r, **r["test"]}[key] for r in results.values()]
            for key, name in FIGURES}
  print(harness.markdown(["figure", *(f"seed {s}" for s in results), "mean"], [
      [name, *(f"{v:.2f}" for v in row), f"{np.mean(row):.2f}"]
      for name, row in values.items()]))


if __name__ == "__main__":
  harness.run(main)
