"""Speed of the segmentation CVAE's train step, best-of-S IoU and
importance-sampled NLL, JAX beside its PyTorch port (pytorch_segmentation.py)
in one process (`pytorch_common.time_peer`); see docs/speed.md. torch is a
benchmark-only package (pip install torch)."""

from benchmarks import pytorch_common
from benchmarks.pytorch_segmentation import PEER

if __name__ == "__main__":
  pytorch_common.speed_main(PEER)
