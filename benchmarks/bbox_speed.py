"""Speed of the box CVAE's train step, JAX beside the same model in PyTorch
(benchmarks/pytorch_bbox.py), in one process (`pytorch_common.time_peer`).

  pip install torch==2.13.0   # benchmark only; not a dependency of cvae_jax
  python -m benchmarks.bbox_speed --json=docs/bbox_speed_cpu.json

train/configs/bbox.py with model=cvae, condition=image (64x64 grey
canvases, convs 16, 32, 32, latent 2, batch 32): the train step (forward,
backward, Adam, one z ~ q).
"""

from benchmarks import pytorch_common
from benchmarks.pytorch_bbox import PEER

if __name__ == "__main__":
  pytorch_common.speed_main(PEER)
