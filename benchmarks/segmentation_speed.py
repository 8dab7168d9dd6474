"""Speed of the segmentation CVAE's train step, JAX beside the same model in
PyTorch (benchmarks/pytorch_segmentation.py), in one process
(`pytorch_common.time_peer`).

  pip install torch==2.13.0   # benchmark only; not a dependency of cvae_jax
  python -m benchmarks.segmentation_speed --configs=offline --steps=10 \
      --json=docs/segmentation_speed_cpu.json
  python -m benchmarks.segmentation_speed --configs=cub --steps=1 --repeats=2 \
      --jax_variants=jax_ynnpack --json=docs/segmentation_speed_cpu.json

The offline config (train/configs/segmentation.py, 32x32 grey) and the
paper's CUB config (segmentation_cub.py, 128x128 RGB), batch 32: the train
step (forward, backward, Adam, one latent sample) of the task's own loss,
then the best-of-S IoU and the importance-sampled NLL, S = --eval_samples.
"""

from benchmarks import pytorch_common
from benchmarks.pytorch_segmentation import PEER

if __name__ == "__main__":
  pytorch_common.speed_main(PEER)
