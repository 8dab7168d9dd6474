"""Learning-rate and KL-weight schedules, built from the config.

Learning rate (`config.lr_schedule`, an optax schedule of the step):
  name="constant"   config.learning_rate throughout (after an optional
                    linear warm-up from 0 over `warmup_steps`);
  name="cosine"     warm-up, then cosine decay to `end_factor` x the rate at
                    `decay_steps` (0: the run's last step);
  name="linear"     warm-up, then linear decay likewise.

KL weight (`config.kl_schedule`, the factor on KL(q || p) in the -ELBO, a
multiple of the model's own beta; 1 is the plain ELBO):
  name="constant"   1;
  name="linear"     KL warm-up (Bowman et al. 2016): 0 -> 1 linearly over
                    `warmup_steps`, then 1;
  name="cyclical"   Fu et al. 2019: cycles of `cycle_steps`, each rising
                    0 -> 1 over its first `ramp_fraction`, then 1.
The weighted objective is a bound only at weight 1: evaluation always uses
weight 1.
"""

import jax.numpy as jnp
import optax

from cvae_jax.configs import kl_schedule_config, lr_schedule_config
from cvae_jax.errors import ConfigError

__all__ = ["LR_SCHEDULES", "KL_SCHEDULES", "learning_rate", "kl_weight"]

LR_SCHEDULES = ("constant", "cosine", "linear")
KL_SCHEDULES = ("constant", "linear", "cyclical")


def _schedule_settings(config, key: str, names: tuple, default):
  settings = config.get(key) or default()
  if settings.name not in names:
    raise ConfigError(f"{key}.name must be one of {', '.join(names)}, got "
                      f"{settings.name!r}; set --config.{key}.name")
  for field in ("warmup_steps", "decay_steps", "cycle_steps"):
    value = settings.get(field, 0)
    if not isinstance(value, int) or value < 0:
      raise ConfigError(f"{key}.{field} must be an integer >= 0, got "
                        f"{value!r}; set --config.{key}.{field}")
  return settings


def learning_rate(config, total_steps: int) -> float | optax.Schedule:
  """config.learning_rate as a float (constant, no warm-up: what the
  optimiser's state had before schedules existed) or an optax schedule."""
  rate = config.learning_rate
  if not (isinstance(rate, (int, float)) and rate > 0):
    raise ConfigError(f"learning_rate must be positive, got {rate!r}; set "
                      "--config.learning_rate")
  s = _schedule_settings(config, "lr_schedule", LR_SCHEDULES, lr_schedule_config)
  if s.name == "constant" and not s.warmup_steps:
    return float(rate)
  if not 0.0 <= s.end_factor <= 1.0:
    raise ConfigError(f"lr_schedule.end_factor must be in [0, 1], got "
                      f"{s.end_factor!r}; set --config.lr_schedule.end_factor")
  warmup = optax.linear_schedule(0.0, rate, s.warmup_steps)
  decay_steps = max((s.decay_steps or total_steps) - s.warmup_steps, 1)
  after = {
      "constant": optax.constant_schedule(rate),
      "cosine": optax.cosine_decay_schedule(rate, decay_steps, s.end_factor),
      "linear": optax.linear_schedule(rate, rate * s.end_factor, decay_steps),
  }[s.name]
  if not s.warmup_steps:
    return after
  return optax.join_schedules([warmup, after], [s.warmup_steps])


def kl_weight(config):
  """step -> the KL weight (a jnp scalar; `step` may be traced)."""
  s = _schedule_settings(config, "kl_schedule", KL_SCHEDULES, kl_schedule_config)
  if s.name == "linear":
    if not s.warmup_steps:
      raise ConfigError("kl_schedule.name='linear' needs warmup_steps > 0; set "
                        "--config.kl_schedule.warmup_steps")
    return lambda step: jnp.minimum(1.0, step / s.warmup_steps)
  if s.name == "cyclical":
    if not s.cycle_steps or not 0.0 < s.ramp_fraction <= 1.0:
      raise ConfigError("kl_schedule.name='cyclical' needs cycle_steps > 0 and "
                        "ramp_fraction in (0, 1]; set --config.kl_schedule.*")
    ramp = s.cycle_steps * s.ramp_fraction
    return lambda step: jnp.minimum(1.0, (step % s.cycle_steps) / ramp)
  return lambda step: jnp.ones((), jnp.float32)
