"""Dense layers with a selectable initialisation scheme."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["INITIALISATIONS", "dense"]

INITIALISATIONS = ("pytorch", "flax")


def _uniform_fan_in_bias(key, shape, dtype=jnp.float32, *, fan_in: int):
  bound = 1.0 / jnp.sqrt(fan_in)
  return jax.random.uniform(key, shape, dtype, -bound, bound)


def dense(features: int, fan_in: int, initialisation: str,
          name: str | None = None) -> nn.Dense:
  """An `nn.Dense` initialised like PyTorch's `nn.Linear` or like flax.

  "pytorch": weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which is
  what `nn.Linear.reset_parameters` draws (kaiming_uniform with a=sqrt(5)).
  "flax": lecun_normal weights, zero biases.
  """
  if initialisation == "pytorch":
    return nn.Dense(
        features,
        kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
        bias_init=functools.partial(_uniform_fan_in_bias, fan_in=fan_in),
        name=name)
  if initialisation == "flax":
    return nn.Dense(features, name=name)
  raise ValueError(
      f"unknown initialisation {initialisation!r}; use one of {INITIALISATIONS}")
