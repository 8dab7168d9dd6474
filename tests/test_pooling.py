"""The fast max pooling computes nn.max_pool's values and gradients."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvae_jax.models import pooling


def _random(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _values_and_gradients(fn, x, cotangent):
  out, vjp = jax.vjp(fn, x)
  return out, vjp(cotangent)[0]


@pytest.mark.parametrize("shape,window", [((2, 6, 4, 3), 2), ((1, 7, 9, 2), 3)])
def test_max_pool_is_flax_max_pool(shape, window):
  x = _random(shape)  # Continuous values: no ties.
  out_shape = (shape[0], shape[1] // window, shape[2] // window, shape[3])
  cotangent = _random(out_shape, 1)
  ours = _values_and_gradients(lambda x: pooling.max_pool(x, window), x, cotangent)
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
  ours = net(lambda x: pooling.max_pool(x, 2))
  theirs = net(lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)))
  image = jnp.zeros((2, 16, 16, 1)).at[:, 4:9, 5:11].set(_random((2, 5, 6, 1)))
  params = ours.init(jax.random.PRNGKey(0), image)
  params = jax.tree.map(lambda p: p + 0.1, params)  # Positive biases: ties above 0.
  grads = [jax.grad(lambda p, m=m: jnp.sum(m.apply(p, image) ** 2))(params)
           for m in (ours, theirs)]
  assert float(jnp.sum(jnp.abs(grads[0]["params"]["layers_0"]["bias"]))) > 0
  chex.assert_trees_all_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)
