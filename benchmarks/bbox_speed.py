"""Speed of the box CVAE's train step, JAX beside its PyTorch port
(pytorch_bbox.py) in one process (`pytorch_common.time_peer`); see
docs/speed.md. torch is a benchmark-only package (pip install torch)."""

from benchmarks import pytorch_common
from benchmarks.pytorch_bbox import PEER

if __name__ == "__main__":
  pytorch_common.speed_main(PEER)
