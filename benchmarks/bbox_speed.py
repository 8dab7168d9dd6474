"""Speed of the box CVAE's train step (train/configs/bbox.py, model=cvae,
condition=image), JAX beside its PyTorch port (benchmarks/pytorch_bbox.py)
in one process (`pytorch_common.time_peer`); docs/speed.md.

  pip install torch==2.13.0   # benchmark only; not a dependency of cvae_jax
  python -m benchmarks.bbox_speed --json=docs/bbox_speed_cpu.json
"""

from benchmarks import pytorch_common
from benchmarks.pytorch_bbox import PEER

if __name__ == "__main__":
  pytorch_common.speed_main(PEER)
