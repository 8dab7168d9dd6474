"""The optax optimiser of a run: named by the config, or any
`optax.GradientTransformation` a caller passes to `trainer.train`."""

import optax

from cvae_jax import schedules
from cvae_jax.errors import ConfigError

__all__ = ["OPTIMIZERS", "make_optimizer", "from_config", "structure"]

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "lamb", "lion")


def make_optimizer(name: str, learning_rate: float | optax.Schedule,
                   gradient_clip_norm: float = 0.0) -> optax.GradientTransformation:
  """`optax.<name>(learning_rate)`, e.g. adam (PyTorch's defaults: eps=1e-8);
  `learning_rate` a float or an optax schedule of the step; with
  `gradient_clip_norm` > 0 the gradient's global norm is clipped to it first."""
  if name not in OPTIMIZERS:
    raise ConfigError(f"unknown optimizer {name!r}; set --config.optimizer to "
                      f"one of {', '.join(OPTIMIZERS)}")
  if not callable(learning_rate) and not learning_rate > 0:
    raise ConfigError(f"learning_rate must be positive, got {learning_rate}; "
                      "set --config.learning_rate")
  if not (isinstance(gradient_clip_norm, (int, float)) and gradient_clip_norm >= 0):
    raise ConfigError(f"gradient_clip_norm must be a number >= 0 (0: off), got "
                      f"{gradient_clip_norm!r}; set --config.gradient_clip_norm")
  optimizer = getattr(optax, name)(learning_rate)
  if gradient_clip_norm:
    return optax.chain(optax.clip_by_global_norm(gradient_clip_norm), optimizer)
  return optimizer


def from_config(config, total_steps: int) -> optax.GradientTransformation:
  """The config's optimizer, learning rate (and `lr_schedule`) and
  `gradient_clip_norm`; `total_steps` ends a decay with no decay_steps."""
  return make_optimizer(config.optimizer,
                        schedules.learning_rate(config, total_steps),
                        config.get("gradient_clip_norm", 0.0))


def structure(config) -> dict:
  """What fixes the optimiser state's structure (a checkpoint restores only
  into the same): its name, whether the rate is a schedule, clipping on."""
  scheduled = not isinstance(schedules.learning_rate(config, 1), float)
  return {"optimizer": config.optimizer, "lr_scheduled": scheduled,
          "gradient_clipping": bool(config.get("gradient_clip_norm", 0.0))}
