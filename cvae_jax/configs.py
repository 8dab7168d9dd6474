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
           "TRAINER_FIELDS", "with_overrides", "flatten", "recipe_of", "with_recipe"]


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


def recipe_of(config: ml_collections.ConfigDict) -> dict:
  """{dotted key: value} of `config.recipes.<config.model>`, or {}."""
  model = config.get("model")
  recipe = (config.get("recipes") or {}).get(model) if isinstance(model, str) else None
  return flatten(recipe.to_dict()) if recipe else {}


def with_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` with its model's recipe set over it: the settings
  under `config.recipes.<config.model>` (nested like the config itself, e.g.
  {"geco": {"enabled": True}}), the training recipe that model's results were
  made with. Applying it twice changes nothing; a config without `recipes`
  is returned as it is. To change a recipe's value, set it there:
  --config.recipes.<model>.<key>=... (a plain --config.<key> is overridden).
  ConfigError for a recipe key the config does not have."""
  from cvae_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  recipe = recipe_of(config)
  if not recipe:
    return config
  config = ml_collections.ConfigDict(config.to_dict())
  for dotted, value in recipe.items():
    node = config
    *path, last = dotted.split(".")
    for part in path:
      node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or last not in node:
      raise ConfigError(f"recipes.{config.model}.{dotted} names no config key; "
                        f"remove it or fix its name in --config.recipes.{config.model}")
    node[last] = value
  return config
