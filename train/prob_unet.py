"""Ambiguous segmentation: the Probabilistic U-Net (Kohl et al. 2018), the
deterministic U-Net and Sohn et al.'s conv CVAE, judged by the generalised
energy distance against several graders.

  python -m train.prob_unet --config=train/configs/prob_unet.py \
      --config.model=prob_unet --workdir=/tmp/prob_unet

Configs: train/configs/prob_unet.py (the offline MNIST set with a known
grader distribution, the default) and train/configs/prob_unet_lidc.py
(LIDC-IDRI, needs the preprocessed file: --config.data.lidc_path=...).
Rerunning with the same --workdir resumes; a finished one prints its results.
"""

from cvae_jax import cli

if __name__ == "__main__":
  cli.run("cvae_jax.tasks.prob_unet", "train/configs/prob_unet.py")
