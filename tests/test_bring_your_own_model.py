"""Models of one's own, defined in this file alone, get every ambiguity figure
through the runner with no task code: a sampler over logits with no latent
(a tiny Stochastic Segmentation Network: a low-rank Gaussian over the logits)
and a tiny CVAE. `--config.model=test_bring_your_own_model:<factory>` is all
the wiring."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvae_jax import estimators, predictors
from cvae_jax.distributions import Bernoulli, DiagonalGaussian
from cvae_jax.errors import ConfigError
from cvae_jax.models.cvae import CVAE
from cvae_jax.tasks import prob_unet

from helpers import prob_unet_arrays, tiny_prob_unet_config


class LogitSampler(nn.Module):
  """p(y | x) = E_eta[prod Bernoulli(y; sigmoid(eta))], eta ~ N(mu(x),
  P P^T + diag(d)): no latent, its own predictions and Monte-Carlo NLL."""
  rank: int = 2
  log_likelihood_label = "Monte Carlo over the logits"

  @nn.compact
  def __call__(self, image):
    """(mean [B, H * W], factor [B, H * W, rank], log-variance [B, H * W])."""
    h = nn.relu(nn.Conv(4, (3, 3))(image))
    out = nn.Conv(2 + self.rank, (3, 3))(h).reshape(image.shape[0], -1, 2 + self.rank)
    return out[..., 0], 0.1 * out[..., 2:], out[..., 1] - 2.0

  def _logits(self, image, rng, num_samples):
    mean, factor, log_variance = self(image)
    low_rng, diag_rng = jax.random.split(rng)
    low = jax.random.normal(low_rng, (num_samples, *factor.shape[::2]))
    diag = jax.random.normal(diag_rng, (num_samples, *mean.shape))
    return (mean + jnp.einsum("bpr,sbr->sbp", factor, low)
            + jnp.exp(0.5 * log_variance) * diag)

  def sample_predictions(self, image, rng, num_samples):
    return Bernoulli(self._logits(image, rng, num_samples))

  def point_prediction(self, image):
    return Bernoulli(self(image)[0])

  def log_likelihood(self, target, image, rng, num_samples):
    logits = self._logits(image, rng, num_samples)
    return estimators.log_mean_exp(Bernoulli(logits).log_prob(target))


class TinyCVAE(CVAE):
  """A CVAE of one's own: conv features, a global latent of 2."""

  def setup(self):
    self.features = nn.Conv(4, (3, 3))
    self.prior_head = nn.Dense(4)
    self.posterior_head = nn.Dense(4)
    self.output = nn.Conv(1, (1, 1))

  def encode(self, image):
    return {"image": image, "map": nn.relu(self.features(image))}

  def _gaussian(self, head, x):
    mean, log_variance = jnp.split(head(jnp.mean(x, axis=(1, 2))), 2, -1)
    return DiagonalGaussian(mean, log_variance)

  def prior_from_features(self, features):
    return self._gaussian(self.prior_head, features["map"])

  def recognition_from_features(self, target, features):
    mask = target.reshape(features["image"].shape[:-1])[..., None]
    return self._gaussian(self.posterior_head,
                          jnp.concatenate([features["map"], mask], -1))

  def generation_from_features(self, z, features):
    feature_map = features["map"]
    z_map = jnp.broadcast_to(z[..., None, None, :],
                             (*z.shape[:-1], *feature_map.shape[1:3], z.shape[-1]))
    maps = jnp.broadcast_to(feature_map, (*z.shape[:-1], *feature_map.shape[1:]))
    logits = self.output(jnp.concatenate([maps, z_map], -1))
    return Bernoulli(logits.reshape(*z.shape[:-1], -1))


class OnlySamples(nn.Module):
  @nn.compact
  def __call__(self, image):
    return nn.Conv(1, (1, 1))(image)

  def sample_predictions(self, image, rng, num_samples):
    del rng
    return Bernoulli(jnp.broadcast_to(self(image), (num_samples,)))


def make_sampler(config):
  del config
  return LogitSampler()


def make_cvae(config):
  del config
  return TinyCVAE()


def _config(model, data_dir):
  config = tiny_prob_unet_config(model=model, data_dir=str(data_dir),
                                 download=False, validation_size=100,
                                 likelihood_samples=4)
  config.data.update(max_train_examples=32, max_eval_examples=8)
  return config


AMBIGUITY_FIGURES = ("ged_1", "ged_8", "floor_ged_8", "ideal_ged_8",
                     "samples_diversity", "hungarian_iou", "ce_per_pixel", "nll",
                     "ideal_nll", "ece", "variance_ncc_defined", "dice",
                     "mode_tv", "mode_tv_pooled", "unmatched",
                     "mode_frequency_left_tight", "true_mode_frequency_left_tight")


@pytest.mark.parametrize("factory, estimator", [
    ("make_sampler", "Monte Carlo over the logits, S=8"),
    ("make_cvae", "importance-sampled from q(z|x,y), S=8")])
def test_own_model_gets_every_ambiguity_figure(factory, estimator, tmp_path,
                                               tiny_mnist_dir):
  config = _config(f"test_bring_your_own_model:{factory}", tiny_mnist_dir)
  results = prob_unet.train_and_evaluate(config, tmp_path)
  test = results["test"]
  missing = [k for k in AMBIGUITY_FIGURES if k not in test]
  assert not missing, missing
  assert all(np.isfinite(test[k]) for k in AMBIGUITY_FIGURES)
  assert results["estimators"]["nll"] == estimator
  assert 0.0 <= test["mode_tv"] <= 1.0 and test["floor_ged_8"] > 0.0
  assert (tmp_path / "modes.png").exists() and (tmp_path / "panel.png").exists()


def test_a_sampler_trains_and_validates_on_its_own_loss(tmp_path):
  """The objective of a model with no latent is its own -log p(y | x): a few
  steps lower it, and every parameter gets a gradient."""
  config = tiny_prob_unet_config(likelihood_samples=4)
  model = LogitSampler()
  arrays = {k: jnp.asarray(v) for k, v in prob_unet_arrays(n=8, size=8).items()}
  batch = prob_unet.objective_batch(arrays["image"], arrays["masks"][:, 0])
  params = model.init(jax.random.PRNGKey(0), batch["condition"])
  per_example = prob_unet.objective(config, model)
  own = -model.apply(params, batch["target"], batch["condition"],
                     jax.random.PRNGKey(1), 4, method="log_likelihood")
  np.testing.assert_allclose(per_example(params, batch, jax.random.PRNGKey(1))[0],
                             own, rtol=1e-6)

  loss = lambda p: jnp.mean(per_example(p, batch, jax.random.PRNGKey(1))[0])
  grads = jax.grad(loss)(params)
  assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))
  before = loss(params)
  for _ in range(20):
    params = jax.tree.map(lambda p, g: p - 1e-3 * g, params, jax.grad(loss)(params))
  assert loss(params) < before


def test_protocol_shapes():
  model = LogitSampler()
  arrays = {k: jnp.asarray(v) for k, v in prob_unet_arrays(n=3, size=8).items()}
  batch = prob_unet.objective_batch(arrays["image"], arrays["masks"][:, 0])
  params = model.init(jax.random.PRNGKey(0), batch["condition"])
  predict = predictors.predictor(model)
  samples = predict.samples(params, batch["condition"], jax.random.PRNGKey(2), 5)
  assert samples.logits.shape == (5, 3, 64)
  assert predict.point(params, batch["condition"]).logits.shape == (3, 64)
  nll = predict.log_likelihood(params, batch, jax.random.PRNGKey(3), 5)
  assert nll.shape == (3,) and np.all(np.asarray(nll) < 0)


def test_a_half_implemented_protocol_is_one_line():
  with pytest.raises(ConfigError, match="point_prediction"):
    predictors.predictor(OnlySamples())


def test_an_unimportable_model_is_one_line(tmp_path):
  config = tiny_prob_unet_config(model="no_such_package.models:make")
  with pytest.raises(ConfigError, match="cannot import 'no_such_package.models'"):
    prob_unet.validate(config, tmp_path)
  config = tiny_prob_unet_config(model="test_bring_your_own_model:no_factory")
  with pytest.raises(ConfigError, match="no callable 'no_factory'"):
    prob_unet.validate(config, tmp_path)
