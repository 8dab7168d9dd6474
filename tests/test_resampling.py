"""The fast x2 pooling and upsampling compute their library counterparts'
values and gradients."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvae_jax.models import resampling


def _random(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _values_and_gradients(fn, x, cotangent):
  out, vjp = jax.vjp(fn, x)
  return out, vjp(cotangent)[0]


def test_average_pool_is_flax_avg_pool():
  x = _random((2, 6, 4, 3))
  ours = _values_and_gradients(resampling.average_pool_2x, x, _random((2, 3, 2, 3), 1))
  theirs = _values_and_gradients(lambda x: nn.avg_pool(x, (2, 2), strides=(2, 2)), x,
                                 _random((2, 3, 2, 3), 1))
  chex.assert_shape(ours[0], (2, 3, 2, 3))
  chex.assert_trees_all_close(ours, theirs, atol=1e-6)
  with pytest.raises(ValueError, match="even height and width, got 5x4"):
    resampling.average_pool_2x(_random((1, 5, 4, 1)))


@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (1, 1, 2, 2), (3, 8, 8, 1)])
def test_bilinear_upsampling_is_jax_image_resize(shape):
  n, h, w, c = shape
  x, cotangent = _random(shape), _random((n, 2 * h, 2 * w, c), 1)
  ours = _values_and_gradients(resampling.upsample_bilinear_2x, x, cotangent)
  theirs = _values_and_gradients(
      lambda x: jax.image.resize(x, (n, 2 * h, 2 * w, c), "bilinear"), x, cotangent)
  chex.assert_shape(ours[0], (n, 2 * h, 2 * w, c))
  chex.assert_trees_all_close(ours, theirs, atol=1e-5)
  # Not nearest-neighbour: the check can fail.
  nearest = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  assert h == w == 1 or float(jnp.max(jnp.abs(ours[0] - nearest))) > 0.1
