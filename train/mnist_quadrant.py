"""Completes MNIST digits from 1-3 quadrants: baseline, CVAE, GSNN or hybrid.

  python -m train.mnist_quadrant --config=train/configs/mnist_quadrant.py \
      --config.model=cvae --config.num_quadrants=1 --workdir=/tmp/quadrant

Protocols: train/configs/mnist_quadrant.py (Pyro example, the default) and
train/configs/mnist_quadrant_sohn.py. Rerunning with the same --workdir
resumes; a finished one prints its results.
"""

from cvae_jax import cli

if __name__ == "__main__":
  cli.run("cvae_jax.tasks.mnist_quadrant", "train/configs/mnist_quadrant.py")
