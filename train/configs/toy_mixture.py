"""The toy with an exact likelihood (cvae_jax/tasks/toy_mixture.py): a CVAE
on x ~ U(-1, 1), y in R^2 from 2-4 Gaussian modes that move with x.

  python -m train.toy_mixture --config=train/configs/toy_mixture.py --workdir=DIR
  # with KL warm-up over the first 2,000 steps:
  python -m train.toy_mixture --config=train/configs/toy_mixture.py \
      --config.kl_schedule.name=linear --config.kl_schedule.warmup_steps=2000 \
      --workdir=DIR
"""

import ml_collections

from cvae_jax import configs


def get_config() -> ml_collections.ConfigDict:
  config = configs.trainer_defaults()  # Every trainer field, then ours.
  config.data = ml_collections.ConfigDict(dict(
      seed=0, train_size=20_000, validation_size=2_000, test_size=2_000))
  config.network = ml_collections.ConfigDict(dict(hidden_sizes=(64, 64),
                                                  latent_size=2))
  config.batch_size = 100
  config.num_epochs = 100
  config.learning_rate = 3e-3
  config.lr_schedule.update(name="cosine", warmup_steps=200, end_factor=0.05)
  config.steps_per_dispatch = 200
  config.log_every_steps = 200
  config.checkpoint_every_steps = 2_000
  config.early_stopping_metric = ""
  config.eval = ml_collections.ConfigDict(dict(
      batch_size=500,
      num_samples=1_000,  # K of the importance-sampled NLL and the prior MC.
      chunk_size=1_000,
      elbo_samples=10,
      figure_samples=1_000,
      quadrature_points=128))  # Of the model's exact -log p(y|x) (2-D z).
  config.evals = ("true_nll", "importance_sampled", "prior_monte_carlo",
                  "negative_elbo", "samples", "model_nll")
  return config
