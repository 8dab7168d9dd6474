"""The trainer's config fields with their defaults, so that a task's or a
user's config names only what differs:

  config = cvae_jax.configs.trainer_defaults()
  config.batch_size = 100
  config.my_model_setting = ...

Light to import (ml_collections only): config files load before anything
heavy. `cvae_jax.training.trainer` documents each field.
"""

import ml_collections

__all__ = ["lr_schedule_config", "kl_schedule_config", "trainer_defaults",
           "TRAINER_FIELDS", "with_overrides", "flatten"]


def lr_schedule_config(**overrides) -> ml_collections.ConfigDict:
  """`config.lr_schedule` (see `cvae_jax.schedules`): constant, no warm-up."""
  return ml_collections.ConfigDict(dict(
      dict(name="constant", warmup_steps=0, decay_steps=0, end_factor=0.0),
      **overrides))


def kl_schedule_config(**overrides) -> ml_collections.ConfigDict:
  """`config.kl_schedule` (see `cvae_jax.schedules`): weight 1 throughout."""
  return ml_collections.ConfigDict(dict(
      dict(name="constant", warmup_steps=0, cycle_steps=0, ramp_fraction=0.5),
      **overrides))


def trainer_defaults() -> ml_collections.ConfigDict:
  """Every field `trainer.train` reads, at its default."""
  return ml_collections.ConfigDict(dict(
      seed=0,
      batch_size=64,
      num_epochs=10,
      optimizer="adam",  # Any name of training.optimizers.OPTIMIZERS.
      learning_rate=1e-3,
      lr_schedule=lr_schedule_config(),
      gradient_clip_norm=0.0,  # > 0: clip the gradient's global norm to it.
      kl_schedule=kl_schedule_config(),  # Read by the task's loss.
      compute_dtype="float32",  # or "bfloat16": mixed precision (TPU).
      cpu_convolutions="auto",  # auto | ynnpack | eigen (cvae_jax.backends).
      steps_per_dispatch=1,
      log_every_steps=100,
      log_metrics="mean",  # "mean" over the steps since the last line, or "last".
      checkpoint_every_steps=1_000,
      keep_checkpoints=2,
      early_stopping_metric="",  # A key of the per-epoch evaluation; "" = off.
      early_stopping_patience=5,
  ))


TRAINER_FIELDS = tuple(trainer_defaults().keys())


def with_overrides(config: ml_collections.ConfigDict,
                   overrides: dict) -> ml_collections.ConfigDict:
  """`config` with each dotted key of `overrides` ("eval.num_samples") set,
  as `--config.<key>=<value>` would; returns it."""
  for dotted, value in overrides.items():
    *path, last = dotted.split(".")
    node = config
    for part in path:
      node = node[part]
    node[last] = value
  return config


def flatten(tree: dict, prefix: str = "") -> dict:
  """A nested dict as {dotted key: leaf}."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat
