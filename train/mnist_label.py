"""Trains the label-conditioned MNIST CVAE (the reference PyTorch example).

  python -m train.mnist_label --config=train/configs/mnist_label.py \
      --workdir=/tmp/mnist_label [--config.batch_size=128 ...]

Rerunning with the same --workdir resumes from the latest checkpoint.
"""

from cvae_jax.tasks import mnist_label
from train import entry

if __name__ == "__main__":
  entry.run(mnist_label.train_and_evaluate, "train/configs/mnist_label.py")
