"""The toy with an exact likelihood: a CVAE on a 2-D multimodal regression.

  python -m train.toy_mixture --config=train/configs/toy_mixture.py --workdir=/tmp/toy

No download and no TensorFlow; about two minutes on a laptop CPU.
"""

from cvae_jax import cli

if __name__ == "__main__":
  cli.run("cvae_jax.tasks.toy_mixture", "train/configs/toy_mixture.py")
