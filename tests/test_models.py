import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvae_jax.models import LabelCVAE


def _init(model, batch=4):
  return model.init(jax.random.PRNGKey(0), jnp.zeros((batch, 784)),
                    jnp.zeros((batch,), jnp.int32))


def test_reference_parameter_count():
  params = _init(LabelCVAE())
  count = sum(x.size for x in jax.tree.leaves(params))
  assert count == 324_804  # 794*200+200 + 2*(200*10+10) + 20*200+200 + 200*784+784


def test_shapes_of_the_three_networks():
  model = LabelCVAE(hidden_size=32, latent_size=3)
  params = _init(model)
  target, label = jnp.ones((4, 784)) * 0.5, jnp.arange(4)
  posterior = model.apply(params, target, label, method="recognition")
  chex.assert_shape([posterior.mean, posterior.log_variance], (4, 3))
  prior = model.apply(params, label, method="prior")
  chex.assert_shape([prior.mean, prior.log_variance], (4, 3))
  np.testing.assert_array_equal(prior.mean, 0.0)
  z = jnp.zeros((7, 4, 3))  # A leading sample axis.
  chex.assert_shape(model.apply(params, z, label, method="generation").logits,
                    (7, 4, 784))


def test_pytorch_initialisation_bounds():
  params = _init(LabelCVAE())["params"]
  for name, fan_in in [("fc1", 794), ("fc21", 200), ("fc3", 20), ("fc4", 200)]:
    bound = 1 / np.sqrt(fan_in)
    kernel, bias = params[name]["kernel"], params[name]["bias"]
    assert np.max(np.abs(kernel)) <= bound and np.max(np.abs(bias)) <= bound
    assert np.max(np.abs(kernel)) > 0.95 * bound  # Uniform fills the range.
    assert np.min(bias) < 0 < np.max(bias)  # Not zero, unlike flax's default.
  flax_params = _init(LabelCVAE(initialisation="flax"))["params"]
  np.testing.assert_array_equal(flax_params["fc1"]["bias"], 0.0)


def test_unknown_initialisation_is_rejected():
  with pytest.raises(ValueError, match="initialisation"):
    _init(LabelCVAE(initialisation="xavier"))


def test_generate_and_reconstruct_give_bernoulli_means():
  from cvae_jax import sampling  # pylint: disable=g-import-not-at-top
  model = LabelCVAE(hidden_size=32, latent_size=3)
  params = _init(model)
  labels = jnp.arange(10)
  images = jax.jit(lambda p, l, r: sampling.generate(model, p, l, r))(
      params, labels, jax.random.PRNGKey(1))
  chex.assert_shape(images, (10, 784))
  assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
  other = sampling.generate(model, params, labels, jax.random.PRNGKey(2))
  assert not np.allclose(images, other)  # z is sampled.
  recon = sampling.reconstruct(model, params, images, labels, jax.random.PRNGKey(3))
  chex.assert_shape(recon, (10, 784))
