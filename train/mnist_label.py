"""Trains the label-conditioned MNIST CVAE.

  python -m train.mnist_label --config=train/configs/mnist_label.py \
      --workdir=/tmp/mnist_label [--config.batch_size=128 ...]

Rerunning with the same --workdir resumes from the latest checkpoint.
"""

from absl import app, flags
from ml_collections import config_flags

from cvae_jax.tasks import mnist_label
from train import entry

_CONFIG = config_flags.DEFINE_config_file(
    "config", "train/configs/mnist_label.py", "Training configuration.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, logs, results.",
                               required=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  entry.run(mnist_label.train_and_evaluate, _CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
