"""Quadrant completion: the masking, the models, the GSNN / hybrid objectives
and the estimators on the quadrant CVAE (Sohn et al. 2015, section 5.1)."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvae_jax import distributions, estimators, objectives
from cvae_jax.data import quadrants
from cvae_jax.distributions import DiagonalGaussian
from cvae_jax.errors import ConfigError
from cvae_jax.models import CVAE, BaselineNet, QuadrantCVAE
from cvae_jax.models.quadrant import HIDDEN, fill_hidden
from cvae_jax.tasks import mnist_quadrant
from train.configs import mnist_quadrant as quadrant_config

PYRO_ORDER = ("bottom_left", "top_left", "top_right")


def _images(n=5, seed=0):
  return np.random.default_rng(seed).random((n, 784)).astype(np.float32)


@pytest.mark.parametrize("num_quadrants", [1, 2, 3])
def test_masking_is_exact_and_x_y_never_overlap(num_quadrants):
  images = _images()
  split = quadrants.split_by_quadrants(images, num_quadrants, PYRO_ORDER)
  given = split["condition"] != HIDDEN
  hidden = split["target_mask"]
  chex.assert_shape([split["condition"], split["target"], hidden], (5, 784))
  np.testing.assert_array_equal(given, ~hidden)  # A partition of the pixels.
  assert given[0].sum() == 196 * num_quadrants
  np.testing.assert_array_equal(split["condition"][given], images[given])
  np.testing.assert_array_equal(split["target"][hidden], images[hidden])
  np.testing.assert_array_equal(split["target"][given], 0.0)
  np.testing.assert_array_equal(
      np.asarray(fill_hidden(split["condition"], split["target"])), images)


def test_data_and_model_agree_on_the_hidden_value():
  from cvae_jax.models import quadrant as quadrant_models  # pylint: disable=g-import-not-at-top
  assert quadrants.HIDDEN == quadrant_models.HIDDEN


def test_quadrant_layout_follows_the_pyro_example():
  """1: bottom-left given; 2: the left half; 3: all but the bottom-right."""
  layouts = [quadrants.given_pixels(n, PYRO_ORDER).reshape(28, 28)
             for n in (1, 2, 3)]
  expected = [np.zeros((28, 28), bool) for _ in range(3)]
  expected[0][14:, :14] = True
  expected[1][:, :14] = True
  expected[2][:, :] = True
  expected[2][14:, 14:] = False
  for layout, want in zip(layouts, expected):
    np.testing.assert_array_equal(layout, want)


@pytest.mark.parametrize("num_quadrants,order", [
    (0, PYRO_ORDER), (4, PYRO_ORDER), (2, ("top_left", "top_left")),
    (1, ("middle",)), (3, ("top_left", "top_right"))])
def test_bad_quadrant_config_is_a_config_error(num_quadrants, order):
  with pytest.raises(ConfigError):
    quadrants.given_pixels(num_quadrants, order)


def test_binarisation():
  images = _images(200)
  threshold = quadrants.binarise(images, "threshold", 0)
  np.testing.assert_array_equal(threshold, images > 0.5)
  stochastic = quadrants.binarise(images, "stochastic", 0)
  assert set(np.unique(stochastic)) <= {0.0, 1.0}
  np.testing.assert_array_equal(stochastic, quadrants.binarise(images, "stochastic", 0))
  assert abs(stochastic.mean() - images.mean()) < 0.01  # E[pixel] = grey level.
  with pytest.raises(ConfigError):
    quadrants.binarise(images, "otsu", 0)


MODEL = QuadrantCVAE(hidden_sizes=(32, 16), latent_size=4,
                     generation_sees_condition=True, baseline_to_generation=True)


def _batch(num_quadrants=1, n=6, seed=0):
  split = quadrants.split_by_quadrants(_images(n, seed), num_quadrants, PYRO_ORDER)
  return {k: jnp.asarray(v) for k, v in split.items()}


def _params(model=MODEL):
  batch = _batch()
  return model.init(jax.random.PRNGKey(0), batch["target"], batch["condition"])


def test_model_shapes_with_sample_axes():
  params, batch = _params(), _batch()
  prior = MODEL.apply(params, batch["condition"], method="prior")
  chex.assert_shape([prior.mean, prior.log_variance], (6, 4))
  z = jnp.zeros((3, 6, 4))
  chex.assert_shape(MODEL.apply(params, z, batch["condition"],
                                method="generation").logits, (3, 6, 784))
  # One z per sample axis entry gives the same as separate calls.
  np.testing.assert_allclose(
      MODEL.apply(params, z, batch["condition"], method="generation").logits[1],
      MODEL.apply(params, z[1], batch["condition"], method="generation").logits,
      rtol=1e-5, atol=1e-5)


def test_recognition_sees_the_target_only_on_hidden_pixels():
  params, batch = _params(), _batch()
  changed = {**batch, "target": jnp.where(batch["target_mask"], batch["target"], 7.0)}
  np.testing.assert_array_equal(
      MODEL.apply(params, batch["target"], batch["condition"], method="recognition"),
      MODEL.apply(params, changed["target"], changed["condition"],
                  method="recognition"))


class ObjectiveTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_hybrid_is_gsnn_at_alpha_0_and_cvae_at_alpha_1(self):
    params, batch, rng = _params(), _batch(2), jax.random.PRNGKey(3)
    hybrid = self.variant(functools.partial(objectives.hybrid_objective, MODEL),
                          static_argnames="alpha")
    gsnn = objectives.gsnn_negative_log_likelihood(MODEL, params, batch, rng)
    cvae = objectives.negative_elbo(MODEL, params, batch, rng).loss
    chex.assert_shape([gsnn, cvae], (6,))
    chex.assert_trees_all_close(hybrid(params, batch, rng, alpha=0.0), gsnn,
                                rtol=1e-5)
    chex.assert_trees_all_close(hybrid(params, batch, rng, alpha=1.0), cvae,
                                rtol=1e-5)
    chex.assert_trees_all_close(hybrid(params, batch, rng, alpha=0.25),
                                0.25 * cvae + 0.75 * gsnn, rtol=1e-5)

  def test_gsnn_has_no_kl_term(self):
    """It is -log p(y | x, z) at z ~ p(z | x): the recognition net gets no
    gradient, and the value is the likelihood term alone."""
    params, batch, rng = _params(), _batch(), jax.random.PRNGKey(4)
    gsnn = lambda p: jnp.sum(objectives.gsnn_negative_log_likelihood(
        MODEL, p, batch, rng))
    grads = jax.grad(gsnn)(params)["params"]
    for leaf in jax.tree.leaves(grads["recognition_net"]):
      np.testing.assert_array_equal(leaf, 0.0)
    assert any(np.any(leaf != 0) for leaf in jax.tree.leaves(grads["prior_net"]))
    prior = MODEL.apply(params, batch["condition"], method="prior")
    z = distributions.sample_gaussian(rng, prior)
    np.testing.assert_allclose(
        objectives.gsnn_negative_log_likelihood(MODEL, params, batch, rng),
        -objectives.target_log_likelihood(MODEL, params, batch, z), rtol=1e-6)

  def test_only_hidden_pixels_count(self):
    params, batch, rng = _params(), _batch(), jax.random.PRNGKey(5)
    visible_changed = {**batch, "target": jnp.where(
        batch["target_mask"], batch["target"], 1.0 - batch["target"])}
    for fn in (lambda b: objectives.negative_elbo(MODEL, params, b, rng).loss,
               lambda b: objectives.gsnn_negative_log_likelihood(MODEL, params, b, rng)):
      np.testing.assert_array_equal(fn(batch), fn(visible_changed))
    baseline = BaselineNet((32, 16))
    baseline_params = baseline.init(rng, batch["condition"])
    nll = objectives.baseline_negative_log_likelihood(baseline, baseline_params, batch)
    logits = baseline.apply(baseline_params, batch["condition"]).logits
    y, m = np.asarray(batch["target"]), np.asarray(batch["target_mask"])
    p = jax.nn.sigmoid(np.asarray(logits, np.float64))
    expected = -np.sum(m * (y * np.log(p) + (1 - y) * np.log1p(-p)), axis=-1)
    np.testing.assert_allclose(nll, expected, rtol=1e-4)

  def test_baseline_gets_no_gradient_from_the_cvae_objectives(self):
    params, batch, rng = _params(), _batch(), jax.random.PRNGKey(6)
    for kind in (lambda p: objectives.negative_elbo(MODEL, p, batch, rng).loss,
                 lambda p: objectives.gsnn_negative_log_likelihood(MODEL, p, batch, rng)):
      grads = jax.grad(lambda p: jnp.sum(kind(p)))(params)["params"]["baseline"]
      for leaf in jax.tree.leaves(grads):
        np.testing.assert_array_equal(leaf, 0.0)


class ZIndependent(CVAE):
  """A CVAE whose generation ignores z: log p(y | x) = log Bernoulli(y;
  logits(x)) exactly, so every estimator's target is known in closed form."""

  latent_size: int = 3

  def setup(self):
    self.logits = nn.Dense(784)
    self.shift = self.param("shift", nn.initializers.normal(0.5), (self.latent_size,))

  def recognition_from_features(self, target, condition):
    mean = jnp.broadcast_to(self.shift, (condition.shape[0], self.latent_size))
    return DiagonalGaussian(mean, jnp.full_like(mean, 0.3))

  def prior_from_features(self, condition):
    return distributions.standard_normal_like(
        jnp.zeros((condition.shape[0], self.latent_size)))

  def generation_from_features(self, z, condition):
    return distributions.Bernoulli(
        jnp.broadcast_to(self.logits(condition), (*z.shape[:-1], 784)))


def test_estimators_hit_the_closed_form_on_a_known_likelihood():
  model, batch = ZIndependent(), _batch(2)
  params = model.init(jax.random.PRNGKey(0), batch["target"], batch["condition"])
  logits = model.apply(params, jnp.zeros((6, 3)), batch["condition"],
                       method="generation").logits
  exact = distributions.bernoulli_log_likelihood(
      logits, batch["target"], batch["target_mask"])
  rng = jax.random.PRNGKey(1)
  np.testing.assert_allclose(
      estimators.log_likelihood_at_prior_mean(model, params, batch), exact, rtol=1e-5)
  prior_mc = estimators.cvae_log_likelihood(model, params, batch, rng, 10, "prior")
  np.testing.assert_allclose(prior_mc, exact, rtol=1e-5)  # Weights are all 1.
  # With q != p the importance weights p/q vary, their mean tends to 1.
  errors = [np.max(np.abs(estimators.cvae_log_likelihood(
      model, params, batch, rng, k, "recognition", chunk_size=10) - exact))
            for k in (10, 10_000)]
  assert errors[1] < 0.05 and errors[1] < errors[0] / 3, errors
  # The ELBO is below log p(y | x) by exactly KL(q || p) in expectation.
  elbo = -objectives.mean_negative_elbo(model, params, batch, rng, 10)
  q = model.apply(params, batch["target"], batch["condition"], method="recognition")
  kl = distributions.kl_diagonal_gaussians(q, model.apply(
      params, batch["condition"], method="prior"))
  np.testing.assert_allclose(elbo, exact - kl, rtol=1e-5)


def test_importance_sampled_estimate_is_above_the_elbo_on_the_quadrant_cvae():
  params, batch = _params(), _batch(1, n=20)
  rng = jax.random.PRNGKey(2)
  elbo = -objectives.mean_negative_elbo(MODEL, params, batch, rng, 10)
  ll = estimators.cvae_log_likelihood(MODEL, params, batch, rng, 100)
  chex.assert_shape([elbo, ll], (20,))
  assert np.mean(ll) > np.mean(elbo)


def test_one_importance_sampling_implementation():
  """Tasks and objectives call `cvae_jax.estimators`; no second estimator.
  (The exact density of a Gaussian mixture sums over its components, which
  is no sampling estimate: it may use logsumexp.)"""
  import inspect  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(estimators.__file__).parent
  mixture = inspect.getsource(distributions.gaussian_mixture_log_density)
  for path in root.rglob("*.py"):
    if path.name != "estimators.py":
      text = path.read_text().replace(mixture, "")
      assert "logsumexp" not in text and "running_max" not in text, path


@pytest.mark.parametrize("model", ["gsnn", "hybrid"])
def test_gsnn_samples_reaches_the_objective(model):
  params, batch, rng = _params(), _batch(), jax.random.PRNGKey(7)
  config = quadrant_config.get_config()
  config.model = model

  def objective(samples):
    config.gsnn_samples = samples
    return mnist_quadrant.objective(config, MODEL)(params, batch, rng)

  cvae = objectives.negative_elbo(MODEL, params, batch, rng).loss
  alpha = 0.0 if model == "gsnn" else config.hybrid_alpha
  for samples in (1, 10):
    gsnn = objectives.gsnn_negative_log_likelihood(MODEL, params, batch, rng,
                                                   num_samples=samples)
    np.testing.assert_allclose(objective(samples),
                               alpha * cvae + (1 - alpha) * gsnn, rtol=1e-5)
  assert np.all(np.abs(objective(10) - objective(1)) > 1e-3)


def test_the_run_identity_names_the_objectives_own_settings():
  """A GSNN or hybrid checkpoint depends on its S (and a hybrid's on its
  alpha): resuming with another is refused."""
  config = quadrant_config.get_config()
  for model in ("cvae", "gsnn", "hybrid"):
    config.model, config.gsnn_samples = model, 10
    identity = mnist_quadrant.run_identity(config)
    assert identity.get("gsnn_samples") == (None if model == "cvae" else 10)
    assert ("hybrid_alpha" in identity) == (model == "hybrid")


@pytest.mark.parametrize("value", [0, -1])
def test_bad_gsnn_samples_is_a_one_line_config_error(tmp_path, value):
  config = quadrant_config.get_config()
  config.model, config.download = "gsnn", False
  config.gsnn_samples = value
  with pytest.raises(ConfigError, match="--config.gsnn_samples") as error:
    mnist_quadrant.train_and_evaluate(config, tmp_path)  # Before any data.
  assert "\n" not in str(error.value)
