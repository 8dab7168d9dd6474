"""Speed of the Probabilistic U-Net's train step, GED and importance-sampled
NLL, JAX beside its PyTorch port (pytorch_prob_unet.py) in one process
(`pytorch_common.time_peer`); see docs/speed.md. torch is a benchmark-only
package (pip install torch)."""

from benchmarks import pytorch_common
from benchmarks.pytorch_prob_unet import PEER

if __name__ == "__main__":
  pytorch_common.speed_main(PEER)
