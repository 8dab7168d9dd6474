"""MNIST quadrant completion, the Pyro CVAE example's protocol (the default).

Grey levels in [0, 1] as Bernoulli targets; the 1-quadrant input is the
bottom-left quadrant, 2 quadrants add the top-left, 3 add the top-right;
hidden pixels are -1 in the input and only they are counted in the
likelihood. Nets 784-500-500, latent 200, p(y | z) (the generation net does
not see x), the baseline's prediction fills the prior net's input. Adam 1e-3,
batch 128, early stopping with patience 3 on the validation loss.

  python -m train.mnist_quadrant --config=train/configs/mnist_quadrant.py \
      --config.model=cvae --config.num_quadrants=1 --workdir=DIR
"""

import ml_collections

from cvae_jax import configs


def get_config() -> ml_collections.ConfigDict:
  config = configs.trainer_defaults()  # Every trainer field; ours below.
  config.protocol = "pyro"
  config.model = "cvae"  # baseline | cvae | gsnn | hybrid
  config.num_quadrants = 1  # Given quadrants: 1, 2 or 3.
  config.quadrant_order = ("bottom_left", "top_left", "top_right")
  config.binarisation = "none"  # none | threshold | stochastic
  config.hybrid_alpha = 0.5  # Weight of the CVAE objective in "hybrid".
  # Prior samples S in the GSNN objective -log (1/S) sum_s p(y | x, z_s) of
  # "gsnn" and of the hybrid's GSNN term; 1 is the paper's. Unused otherwise.
  config.gsnn_samples = 1
  config.baseline_training = "pretrained"  # pretrained (then frozen) | joint
  config.baseline_workdir = ""  # A baseline run to reuse; "" = workdir/baseline.
  config.network = ml_collections.ConfigDict(dict(
      hidden_sizes=(500, 500), latent_size=200,
      baseline_to_prior=True, baseline_to_generation=False,
      generation_sees_condition=False, initialisation="pytorch"))

  config.data_dir = "~/tensorflow_datasets"
  config.download = True
  config.validation_size = 10_000  # The last images of TFDS's train split.

  config.seed = 0
  config.batch_size = 128
  config.num_epochs = 101  # At most; early stopping usually ends sooner.
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  config.compute_dtype = "float32"  # or "bfloat16": mixed precision (TPU).
  config.early_stopping_metric = "validation_loss"
  config.early_stopping_patience = 3

  config.steps_per_dispatch = 390  # One epoch of 50,000 images.
  config.log_every_steps = 130
  config.checkpoint_every_steps = 390
  config.keep_checkpoints = 2

  config.eval = ml_collections.ConfigDict(dict(
      batch_size=500,
      num_samples=100,  # S of the prior Monte-Carlo and importance sampling.
      large_num_samples=1000,  # S of the second importance-sampled estimate,
      large_num_images=0,  # over this many test images (0: all; ~5 min/10k).
      chunk_size=100,  # Samples drawn at once (memory).
      elbo_samples=10,  # The negative ELBO as the Pyro example reports it.
      figure_images=10, figure_samples=5))
  # Evaluators to run (cvae_jax.evaluators; those that do not apply to the
  # model are skipped: a baseline's is "exact", a GSNN's (a) and (b)).
  config.evals = ("exact", "prior_mean", "prior_monte_carlo",
                  "importance_sampled", "importance_sampled_large",
                  "negative_elbo", "completions")
  return config
