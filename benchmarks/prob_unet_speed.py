"""Speed of the Probabilistic U-Net (train/configs/prob_unet.py and
prob_unet_lidc.py), JAX beside its PyTorch port
(benchmarks/pytorch_prob_unet.py) in one process (`pytorch_common.time_peer`):
the train step, then the GED and the importance-sampled NLL over the graders,
S = --eval_samples; docs/speed.md.

  pip install torch==2.13.0   # benchmark only; not a dependency of cvae_jax
  python -m benchmarks.prob_unet_speed --configs=offline --steps=10 \
      --json=docs/prob_unet_speed_cpu.json
"""

from benchmarks import pytorch_common
from benchmarks.pytorch_prob_unet import PEER

if __name__ == "__main__":
  pytorch_common.speed_main(PEER)
