"""Trains the label-conditioned MNIST CVAE (the reference PyTorch example).

  python -m train.mnist_label --config=train/configs/mnist_label.py \
      --workdir=/tmp/mnist_label [--config.batch_size=128 ...]

Rerunning with the same --workdir resumes from the latest checkpoint; a
finished one prints its results.
"""

from cvae_jax import cli

if __name__ == "__main__":
  cli.run("cvae_jax.tasks.mnist_label", "train/configs/mnist_label.py")
