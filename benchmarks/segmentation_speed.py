"""Speed of the segmentation CVAE (train/configs/segmentation.py and
segmentation_cub.py), JAX beside its PyTorch port
(benchmarks/pytorch_segmentation.py) in one process
(`pytorch_common.time_peer`): the train step, then the best-of-S IoU and the
importance-sampled NLL, S = --eval_samples; docs/speed.md.

  pip install torch==2.13.0   # benchmark only; not a dependency of cvae_jax
  python -m benchmarks.segmentation_speed --configs=offline --steps=10 \
      --json=docs/segmentation_speed_cpu.json
"""

from benchmarks import pytorch_common
from benchmarks.pytorch_segmentation import PEER

if __name__ == "__main__":
  pytorch_common.speed_main(PEER)
