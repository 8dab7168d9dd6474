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


@pytest.mark.parametrize("shape,window", [((2, 6, 4, 3), 2), ((1, 7, 9, 2), 3)])
def test_max_pool_is_flax_max_pool(shape, window):
  x = _random(shape)  # Continuous values: no ties.
  out_shape = (shape[0], shape[1] // window, shape[2] // window, shape[3])
  cotangent = _random(out_shape, 1)
  ours = _values_and_gradients(lambda x: resampling.max_pool(x, window), x, cotangent)
  theirs = _values_and_gradients(
      lambda x: nn.max_pool(x, (window, window), strides=(window, window)), x, cotangent)
  chex.assert_shape(ours[0], out_shape)
  chex.assert_trees_all_close(ours, theirs, atol=1e-6)


def test_max_pool_gives_a_conv_net_the_same_gradients_over_a_constant_background():
  """Ties (a conv of a zero background after a ReLU with a positive bias)
  split the gradient differently, but the conv's inputs there are equal, so
  its parameters get the same gradients."""
  net = lambda pool: nn.Sequential([nn.Conv(4, (3, 3)), nn.relu, pool,
                                    nn.Conv(2, (3, 3)), nn.relu, pool])
  ours = net(lambda x: resampling.max_pool(x, 2))
  theirs = net(lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)))
  image = jnp.zeros((2, 16, 16, 1)).at[:, 4:9, 5:11].set(_random((2, 5, 6, 1)))
  params = ours.init(jax.random.PRNGKey(0), image)
  params = jax.tree.map(lambda p: p + 0.1, params)  # Positive biases: ties above 0.
  grads = [jax.grad(lambda p, m=m: jnp.sum(m.apply(p, image) ** 2))(params)
           for m in (ours, theirs)]
  assert float(jnp.sum(jnp.abs(grads[0]["params"]["layers_0"]["bias"]))) > 0
  chex.assert_trees_all_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)
