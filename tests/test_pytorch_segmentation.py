"""The PyTorch segmentation CVAE of benchmarks/ computes the flax model's
function, and its two evaluation functions (best-of-S IoU, importance-sampled
NLL) the library's figures at the same draws (skipped where torch, a
benchmark-only package, is not installed)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import fake_data, pytorch_common, pytorch_segmentation
from cvae_jax import distributions, estimators, metrics
from cvae_jax.models import segmentation as seg_models
from cvae_jax.tasks import segmentation


def _setup(batch_size=3):
  config = pytorch_segmentation.PEER.configs["offline"]()
  config.batch_size = batch_size
  arrays = fake_data.training_arrays(segmentation, config)
  model, init_fn, _ = fake_data.step_pieces(segmentation, config, arrays)
  batch = fake_data.init_batch(segmentation, config, arrays)
  params = pytorch_common.randomized(init_fn(jax.random.PRNGKey(0)))
  torch_model = pytorch_segmentation.SegmentationCVAE(1, config.network,
                                                      config.image_size)
  pytorch_segmentation.load_flax_params(torch_model, params)
  return config, arrays, model, batch, params, torch_model


def test_same_parameters_and_losses_as_flax():
  config, arrays, _, _, params, torch_model = _setup()
  assert pytorch_common.num_params(torch_model) == sum(
      x.size for x in jax.tree.leaves(params))
  assert pytorch_common.loss_difference(pytorch_segmentation.PEER, config, params,
                                        torch_model, arrays) < 1e-5


def test_evaluation_functions_match_the_library_at_the_same_draws():
  config, arrays, model, batch, params, torch_model = _setup()
  size, net = config.image_size, config.network
  side = size // seg_models.downsampling_factor(net.first_stride, net.pools)
  num_samples, b = 5, config.batch_size
  noise = np.random.default_rng(4).standard_normal(
      (num_samples, b, side, side, net.latent_channels), np.float32)
  apply = functools.partial(model.apply, params)
  features = apply(batch["condition"], method="encode")
  prior = apply(features, method="prior_from_features")
  posterior = apply(batch["target"], batch["condition"], method="recognition")
  flat = jnp.asarray(noise.reshape(num_samples, b, -1))  # flax's NHWC latent.

  def at(gaussian):
    z = gaussian.mean + jnp.exp(0.5 * gaussian.log_variance) * flat
    return z, apply(z, features, method="generation_from_features")

  logits = at(prior)[1].logits
  masks = seg_models.full_resolution(logits, size, size) > 0
  truth = jnp.asarray(arrays["masks"][:, 0] > 0.5)
  jax_iou = jnp.max(metrics.intersection_over_union(masks, truth[None]), axis=0)
  z, likelihood = at(posterior)
  jax_nll = -estimators.log_mean_exp(
      estimators.batch_log_likelihood(likelihood, batch)
      + distributions.gaussian_log_density(z, prior)
      - distributions.gaussian_log_density(z, posterior))

  args = (*pytorch_common.torch_batch(arrays),
          torch.from_numpy(noise).permute(0, 1, 4, 2, 3).contiguous())
  with torch.no_grad():
    torch_iou = pytorch_segmentation.best_of_samples_iou(torch_model, *args).numpy()
    torch_nll = pytorch_segmentation.importance_sampled_nll(torch_model, *args).numpy()
  np.testing.assert_allclose(torch_iou, jax_iou, atol=1e-6)
  np.testing.assert_allclose(torch_nll, jax_nll, rtol=1e-5)
  assert 0 < jax_iou.min() and jax_nll.min() > 0
