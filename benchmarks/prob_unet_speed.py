"""Speed of the Probabilistic U-Net's train step, JAX beside the same model
in PyTorch (benchmarks/pytorch_prob_unet.py), in one process
(`pytorch_common.time_peer`).

  pip install torch==2.13.0   # benchmark only; not a dependency of cvae_jax
  python -m benchmarks.prob_unet_speed --configs=lidc --steps=2 --repeats=2 \
      --json=docs/prob_unet_speed_cpu.json
  python -m benchmarks.prob_unet_speed --configs=offline --steps=10 \
      --json=docs/prob_unet_speed_cpu.json

Kohl et al.'s LIDC config (train/configs/prob_unet_lidc.py: 128x128 grey,
U-Net channels 32-192, 3 convs a block, latent 6, batch 32) and the offline
one (prob_unet.py: 32x32, channels halved), 4 graders' masks: the train
step (forward, backward, Adam, one z ~ q, a random grader per image), then
the GED and the importance-sampled NLL over the graders, S = --eval_samples.
"""

from benchmarks import pytorch_common
from benchmarks.pytorch_prob_unet import PEER

if __name__ == "__main__":
  pytorch_common.speed_main(PEER)
