"""Ambiguous segmentation on the offline MNIST set with a known grader
distribution (cvae_jax/data/mnist_ambiguous.py): Kohl et al.'s Probabilistic
U-Net, the deterministic U-Net and Sohn et al.'s conv CVAE.

  python -m train.prob_unet --config=train/configs/prob_unet.py \
      --config.model=prob_unet --workdir=DIR

model: unet | prob_unet | sohn_cvae. Kohl et al.'s published sizes (LIDC,
128 x 128) are in train/configs/prob_unet_lidc.py; here, for 32 x 32 images on
a 2-core CPU: U-Net channels halved (16, 32, 64, 96 for 32, 64, 128, 192) and
the training recipe below (16 epochs of 25,000 images, ~1 h on 2 cores,
instead of Adam 1e-4 for 240k iterations). Everything else is as published:
4 blocks of 3 convs, latent 6, beta 1, 3 fcomb 1x1 convs, a random grader per example per step, 16 samples per
image in evaluation (and 1, 4, 100).
"""

import ml_collections

from cvae_jax import configs, geco


def get_config() -> ml_collections.ConfigDict:
  config = configs.trainer_defaults()  # Every trainer field; ours below.
  # unet | prob_unet | sohn_cvae | hpu_net | phiseg | ssn | package.module:factory
  config.model = "prob_unet"
  config.dataset = "mnist_ambiguous"  # or lidc (prob_unet_lidc.py)
  config.image_size = 32  # Must divide by 2^(len(network.channels) - 1).
  config.beta = 1.0  # Weight of KL(q || p) in a CVAE's loss.
  # A model with no latent that estimates its own -log p(y|x) (e.g. a
  # Gaussian over logits) trains on it with this many draws.
  config.likelihood_samples = 16
  # A CVAE's reconstruction over the worst fraction of pixels (top-k pixel
  # mining, Kohl et al. 2019); 1: every pixel.
  config.top_k_fraction = 1.0
  # GECO (Rezende & Viola 2018, cvae_jax/geco.py): minimise the KL subject to
  # the reconstruction <= kappa nats per image.
  config.geco = geco.geco_config()

  config.data = ml_collections.ConfigDict(dict(
      digit_size=14, num_graders=4,
      # The graders' distribution: constant (the two settings below, for
      # every image) or image_dependent (set by the digits' classes).
      ambiguity="constant",
      structure_probabilities=(0.35, 0.25, 0.2, 0.2),  # left, right, both, none
      loose_probability=0.5,
      seed=0,
      max_train_examples=0,  # Images (2 MNIST digits each); 0: all 25,000.
      max_eval_examples=1_000,  # Validation and test images; 0: all 5,000.
      # dataset=lidc: data_lidc.pickle (or a folder of its chunks), PHiSeg's
      # .hdf5 file or DeepMind's PNG crop folder (cvae_jax/data/lidc.py).
      lidc_path="",
      lidc_fractions=(0.7, 0.15, 0.15)))  # Patients in train/val/test.
  config.data_dir = "~/tensorflow_datasets"
  config.download = True
  config.validation_size = 10_000  # Last images of TFDS mnist train.

  config.network = ml_collections.ConfigDict(dict(
      channels=(16, 32, 64, 96), convs_per_block=3, latent_size=6,
      fcomb_convs=3, log_variance_bound=10.0))
  # model=hpu_net: 6 levels (32 x 32 down to 1 x 1), latents of 1 channel
  # at the 4 coarsest (1, 2, 4, 8 px), as published; 1 residual block of 3
  # convs per level (published: 3) to train in about an hour here.
  config.hpu_network = ml_collections.ConfigDict(dict(
      channels=(16, 32, 64, 96, 96, 96), latent_channels=(1, 1, 1, 1),
      blocks=1, convs_per_block=3, log_variance_bound=10.0))
  # model=phiseg: 5 resolution levels, latents of 2 channels at the 4 finest
  # (32, 16, 8, 4 px); published for 128 px: 7 levels, 5 latent.
  config.phiseg_network = ml_collections.ConfigDict(dict(
      channels=(16, 32, 64, 96, 96), latent_levels=4, latent_channels=2,
      convs_per_block=3, log_variance_bound=10.0))
  # model=ssn: the U-Net of `network` and a rank-10 covariance factor.
  config.ssn_network = ml_collections.ConfigDict(dict(rank=10))
  # model=sohn_cvae: the segmentation task's network (train/configs/segmentation.py).
  config.sohn_network = ml_collections.ConfigDict(dict(
      encoder_channels=(16, 24, 32), encoder_kernels=(5, 3, 3),
      latent_channels=8, latent_kernel=3,
      decoder_channels=(24, 16, 12, 12), decoder_kernels=(3, 3, 3, 3, 3),
      first_stride=2, pools=(2, 2, 1, 1),
      baseline_encoder_channels=(16, 24, 32), baseline_middle_channels=32,
      baseline_decoder_channels=(24, 16, 12),
      baseline_kernels=(5, 3, 3, 3, 3, 3, 3, 3)))

  # The training recipe (all three models): every training image, 16
  # epochs at most, Adam with a 500-step warm-up to 1e-3 then cosine decay to
  # 1e-5, the KL weight warmed up 0 -> 1 over the first 2 epochs, gradients
  # clipped at a global norm of 200 (~2x the typical norm once trained; the
  # loss is summed over pixels), and the checkpoint kept by validation GED
  # (PHiSeg's selection), stopping after 4 epochs without improvement.
  config.seed = 0
  config.batch_size = 32
  config.num_epochs = 16  # At most.
  config.optimizer = "adam"
  config.learning_rate = 1e-3  # The peak.
  config.lr_schedule = configs.lr_schedule_config(
      name="cosine", warmup_steps=500, end_factor=0.01)
  config.kl_schedule = configs.kl_schedule_config(name="linear", warmup_steps=1_562)
  config.gradient_clip_norm = 200.0
  config.compute_dtype = "float32"  # or "bfloat16": mixed precision (TPU).
  config.early_stopping_metric = "validation_ged"  # or "validation_loss".
  config.early_stopping_patience = 4

  # One step per dispatch: XLA:CPU runs convolutions inside the multi-step
  # lax.scan ~10-30x slower; on a GPU or TPU raise it to save dispatches.
  config.steps_per_dispatch = 1
  config.log_every_steps = 125
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 2

  # Each model's own recipe, set over the settings above when it is the
  # model (cvae_jax.configs.with_recipe); change one with
  # --config.recipes.<model>.<key>=...
  config.recipes = ml_collections.ConfigDict(dict(
      # Kohl et al. 2019: GECO. kappa: 3 nats per image, a little above the
      # truth's -log p(y|x) (~1.9 nats, all of it the choice among
      # candidates): at kappa = 1 the multiplier kept growing (the
      # reconstruction stayed near 2) and the KL grew past 150 nats in 2
      # epochs. Every pixel counts (top_k_fraction 1):
      # here -log p(y|x) is a figure, and mining would train on part of it.
      # 8 epochs: ~1 h on 2 cores at twice the Prob U-Net's step time.
      hpu_net=dict(geco=dict(enabled=True, kappa=3.0, rate=0.01), num_epochs=8),
      phiseg=dict(num_epochs=8),
      ssn=dict(likelihood_samples=20)))  # Monteiro et al.: 20 draws.

  config.eval = ml_collections.ConfigDict(dict(
      batch_size=20,
      num_images=500,  # Test images evaluated (0: all loaded ones).
      num_samples=100,  # Most samples per image; also S of the IS NLL.
      ged_samples=(1, 4, 16, 100),
      hungarian_samples=16,  # Samples matched to the graders (x G / G).
      chunk_size=100,
      mode_iou_threshold=0.75,  # Least IoU of a sample with its candidate.
      validation_images=250,  # Per epoch: GED and -log p(y|x) on these...
      validation_samples=16,  # ...with S samples (also the IS S).
      figure_images=8, figure_samples=8))
  # The task's evaluators.
  config.evals = ("samples", "likelihoods", "panel", "calibration", "modes")
  return config
