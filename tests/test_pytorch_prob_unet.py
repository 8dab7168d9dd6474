"""The PyTorch Prob U-Net of benchmarks/ computes the flax model's function
(skipped where torch, a benchmark-only package, is not installed)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import fake_data, pytorch_common, pytorch_prob_unet
from cvae_jax import distributions, estimators
from cvae_jax.tasks import prob_unet


def _setup(network=(), scale=0.05, **changes):
  """(config, arrays, flax model, params with random heads and biases)."""
  config = pytorch_prob_unet.PEER.configs["offline"]()
  config.update(changes)
  config.network.update(dict(network))
  arrays = fake_data.training_arrays(prob_unet, config)
  model, init_fn, _ = fake_data.step_pieces(prob_unet, config, arrays)
  params = init_fn(jax.random.PRNGKey(0))
  return config, arrays, model, pytorch_common.randomized(params, scale)


def test_same_parameters_and_losses_as_flax():
  config, arrays, _, params = _setup(
      {"channels": (4, 6, 8), "convs_per_block": 2}, 0.5, image_size=16,
      batch_size=3, beta=0.5)
  torch_model = pytorch_prob_unet.ProbabilisticUNet(config.network, 1, config.beta)
  assert pytorch_common.num_params(torch_model) == sum(
      x.size for x in jax.tree.leaves(params))
  difference = pytorch_common.loss_difference(pytorch_prob_unet.PEER, config, params,
                                              torch_model, arrays)
  assert difference < 1e-5, difference


def test_importance_sampled_nll_matches_the_library_at_the_same_draws():
  config, arrays, model, params = _setup(batch_size=2)
  torch_model = pytorch_prob_unet.ProbabilisticUNet(config.network)
  pytorch_prob_unet.load_flax_params(torch_model, params)
  noise = np.random.default_rng(5).standard_normal(
      (3, 2, config.network.latent_size), np.float32)
  apply = functools.partial(model.apply, params)
  prior = apply(jnp.asarray(arrays["image"]), method="prior")
  per_grader = []
  for g in range(arrays["masks"].shape[1]):
    batch = fake_data.init_batch(
        prob_unet, config, {"image": arrays["image"], "masks": arrays["masks"][:, g:g + 1]})
    posterior = apply(batch["target"], batch["condition"], method="recognition")
    z = posterior.mean + jnp.exp(0.5 * posterior.log_variance) * noise
    log_likelihood = estimators.batch_log_likelihood(
        apply(z, batch["condition"], method="generation"), batch)
    per_grader.append(-estimators.log_mean_exp(
        log_likelihood + distributions.gaussian_log_density(z, prior)
        - distributions.gaussian_log_density(z, posterior)))
  images, masks = pytorch_common.torch_batch(arrays)
  with torch.no_grad():
    torch_nll = pytorch_prob_unet.importance_sampled_nll(
        torch_model, images, masks, torch.from_numpy(noise)).numpy()
  np.testing.assert_allclose(torch_nll, np.mean(per_grader, axis=0), rtol=1e-5)
