"""The PyTorch Prob U-Net of benchmarks/ computes the flax model's function
(skipped where torch, a benchmark-only package, is not installed)."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import prob_unet_speed, pytorch_common, pytorch_prob_unet
from cvae_jax import distributions, estimators
from cvae_jax.tasks import prob_unet


def test_same_parameters_and_losses_as_flax():
  config = prob_unet_speed._config("offline")  # pylint: disable=protected-access
  config.image_size, config.batch_size = 16, 3
  config.network.channels = (4, 6, 8)
  config.network.convs_per_block = 2
  config.beta = 0.5
  model = prob_unet.make_model(config)
  params = prob_unet_speed.init_params(config, model)
  torch_model = pytorch_prob_unet.ProbabilisticUNet(config.network, 1, config.beta)
  assert pytorch_common.num_params(torch_model) == sum(
      x.size for x in __import__("jax").tree.leaves(params))
  difference = prob_unet_speed.check_same_model(
      config, prob_unet_speed.with_random_heads(params, scale=0.5),
      torch_model, prob_unet_speed.random_arrays(config))
  assert difference["loss"] < 1e-5 and difference["logits"] < 1e-5, difference


def test_importance_sampled_nll_matches_the_library_at_the_same_draws():
  config = prob_unet_speed._config("offline")  # pylint: disable=protected-access
  config.batch_size = 2
  arrays = prob_unet_speed.random_arrays(config)
  model = prob_unet.make_model(config)
  params = prob_unet_speed.with_random_heads(prob_unet_speed.init_params(config, model))
  torch_model = pytorch_prob_unet.ProbabilisticUNet(config.network)
  pytorch_prob_unet.load_flax_params(torch_model, params)
  noise = np.random.default_rng(5).standard_normal(
      (3, 2, config.network.latent_size), np.float32)
  apply = functools.partial(model.apply, params)
  images = jnp.asarray(arrays["image"])
  prior = apply(images, method="prior")
  per_grader = []
  for g in range(arrays["masks"].shape[1]):
    batch = prob_unet.objective_batch(images, jnp.asarray(arrays["masks"][:, g]))
    posterior = apply(batch["target"], batch["condition"], method="recognition")
    z = posterior.mean + jnp.exp(0.5 * posterior.log_variance) * noise
    log_likelihood = estimators.batch_log_likelihood(
        apply(z, batch["condition"], method="generation"), batch)
    per_grader.append(-estimators.log_mean_exp(
        log_likelihood + distributions.gaussian_log_density(z, prior)
        - distributions.gaussian_log_density(z, posterior)))
  with torch.no_grad():
    torch_nll = pytorch_prob_unet.importance_sampled_nll(
        torch_model, torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(arrays["masks"]), torch.from_numpy(noise)).numpy()
  np.testing.assert_allclose(torch_nll, np.mean(per_grader, axis=0), rtol=1e-5)
