"""The optax optimiser named by the config."""

import optax

from cvae_jax.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "lamb", "lion")


def make_optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
  """`optax.<name>(learning_rate)`, e.g. adam (PyTorch's defaults: eps=1e-8)."""
  if name not in OPTIMIZERS:
    raise ConfigError(f"unknown optimizer {name!r}; set --config.optimizer to "
                      f"one of {', '.join(OPTIMIZERS)}")
  if not learning_rate > 0:
    raise ConfigError(f"learning_rate must be positive, got {learning_rate}; "
                      "set --config.learning_rate")
  return getattr(optax, name)(learning_rate)
