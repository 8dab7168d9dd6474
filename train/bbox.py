"""Bounding boxes with several valid answers: regressor, MDN, CVAE or hybrid.

  python -m train.bbox --config=train/configs/bbox.py --config.model=cvae \
      --config.condition=class --workdir=/tmp/bbox

Config: train/configs/bbox.py (the offline MNIST box set; Pascal VOC with
--config.dataset=voc/2007, which TFDS downloads). Rerunning with the same
--workdir resumes; a finished one prints its results.
"""

from cvae_jax import cli

if __name__ == "__main__":
  cli.run("cvae_jax.tasks.bbox", "train/configs/bbox.py")
