"""Segmentation on the offline MNIST set (cvae_jax/data/mnist_segmentation.py):
Sohn et al.'s conv CVAE with channels scaled down to fit a 2-core CPU.

  python -m train.segmentation --config=train/configs/segmentation.py \
      --config.model=cvae --config.occlusion.blocks=2 --workdir=DIR

model: baseline | cvae | gsnn | hybrid. The paper's CUB sizes are in
train/configs/segmentation_cub.py.
"""

import ml_collections

from cvae_jax import configs


def get_config() -> ml_collections.ConfigDict:
  config = configs.trainer_defaults()  # Every trainer field; ours below.
  config.model = "cvae"  # baseline | cvae | gsnn | hybrid
  config.dataset = "mnist_segmentation"  # or caltech_birds2011, oxford_iiit_pet
  config.image_size = 32  # Must divide by first_stride x pools (8 here).
  config.hybrid_alpha = 0.5  # Weight of the CVAE objective in "hybrid".
  config.gsnn_samples = 1  # S of the GSNN term: -log (1/S) sum_s p(y|x,z_s).
  config.input_omission_rate = 0.0  # Sohn et al. use 0.4; 0 = off.
  config.horizontal_flip = False  # Digits are not mirror-symmetric.
  config.multiscale_levels = 0  # Coarse predictions at 1/2 .. 1/2^L; 0 = off.
  config.multiscale_weight = 1.0  # Weight of the coarse scales' loss.

  # The offline set: canvases around MNIST digits (see the data module).
  config.data = ml_collections.ConfigDict(dict(
      num_fragments=3, fragment_size=12, noise_std=0.1, seed=0,
      max_train_examples=8_000,  # 0: all 50,000.
      max_eval_examples=1_000))  # Validation and test images; 0: all 10,000.
  config.occlusion = ml_collections.ConfigDict(dict(blocks=0, size=10))
  config.data_dir = "~/tensorflow_datasets"
  config.download = True
  config.validation_size = 10_000  # Offline set: last images of TFDS train.
  config.validation_fraction = 0.1  # TFDS datasets: last 10% of train.

  config.network = ml_collections.ConfigDict(dict(
      encoder_channels=(16, 24, 32), encoder_kernels=(5, 3, 3),
      latent_channels=8, latent_kernel=3,
      decoder_channels=(24, 16, 12, 12), decoder_kernels=(3, 3, 3, 3, 3),
      first_stride=2, pools=(2, 2, 1, 1),
      baseline_encoder_channels=(16, 24, 32), baseline_middle_channels=32,
      baseline_decoder_channels=(24, 16, 12),
      baseline_kernels=(5, 3, 3, 3, 3, 3, 3, 3)))

  config.seed = 0
  config.batch_size = 32
  config.num_epochs = 5  # At most (fits the table on 2 CPU cores).
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  config.compute_dtype = "float32"  # or "bfloat16": mixed precision (TPU).
  config.early_stopping_metric = "validation_loss"
  config.early_stopping_patience = 3

  # One step per dispatch: XLA:CPU runs convolutions inside the multi-step
  # lax.scan ~10-30x slower (cvae_jax/training/trainer.py); on a GPU or TPU
  # raise it (e.g. 52) to save dispatches.
  config.steps_per_dispatch = 1
  config.log_every_steps = 125
  config.checkpoint_every_steps = 250  # One epoch of 8,000 images.
  config.keep_checkpoints = 2

  config.eval = ml_collections.ConfigDict(dict(
      batch_size=20,  # x num_samples decoder passes at once.
      num_images=500,  # Test images evaluated (0: all loaded ones).
      num_samples=100,  # S of (b), (c) and the largest best-of-S.
      chunk_size=100,
      best_of=(1, 10, 100),
      figure_images=10, figure_samples=5))
  # Evaluators to run (cvae_jax.evaluators.segmentation and .likelihood, and
  # panel.png; those that do not apply to the model are skipped: a baseline
  # has no (b) or (c), and its point prediction's NLL is exact).
  config.evals = ("point", "best_of", "prior_monte_carlo", "importance_sampled",
                  "panel")
  return config
