"""Structured-output segmentation: baseline CNN, conv CVAE, GSNN or hybrid.

  python -m train.segmentation --config=train/configs/segmentation.py \
      --config.model=cvae --config.occlusion.blocks=2 --workdir=/tmp/seg

Configs: train/configs/segmentation.py (offline MNIST set, the default) and
train/configs/segmentation_cub.py (Sohn et al.'s CUB setting, needs TFDS to
download). Rerunning with the same --workdir resumes; a finished one prints
its results.
"""

from cvae_jax import cli

if __name__ == "__main__":
  cli.run("cvae_jax.tasks.segmentation", "train/configs/segmentation.py")
