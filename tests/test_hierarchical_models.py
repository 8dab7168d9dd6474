"""The HPU-Net, PHiSeg and SSN: shapes, every parameter learning, a few steps
lowering the loss, the hierarchical importance-sampled likelihood, SSN's
Monte-Carlo likelihood against quadrature, top-k pixel mining."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cvae_jax import configs, objectives, predictors
from cvae_jax.errors import ConfigError
from cvae_jax.models import ambiguous_segmentation
from cvae_jax.models.hpu_net import HierarchicalProbabilisticUNet
from cvae_jax.models.phiseg import PHiSeg
from cvae_jax.models.ssn import StochasticSegmentationNetwork
from tests.helpers import tiny_prob_unet_config

SIZE, BATCH = 16, 3
MODELS = {
    "hpu_net": lambda: HierarchicalProbabilisticUNet((4, 6, 8, 8), (1, 2)),
    "phiseg": lambda: PHiSeg((4, 6, 8), latent_levels=2, latent_channels=2,
                             convs_per_block=1),
    "ssn": lambda: StochasticSegmentationNetwork((4, 8), 1, rank=3),
}


def _batch(seed=0):
  """Noisy images of a bright square; the target is the square."""
  rng = np.random.default_rng(seed)
  square = np.zeros((BATCH, SIZE, SIZE), np.float32)
  for i, (row, col) in enumerate(rng.integers(0, SIZE // 2, (BATCH, 2))):
    square[i, row:row + SIZE // 2, col:col + SIZE // 2] = 1.0
  image = 0.7 * square + 0.3 * rng.random((BATCH, SIZE, SIZE))
  return {"condition": jnp.asarray(image[..., None], jnp.float32),
          "target": jnp.asarray(square.reshape(BATCH, -1))}


def _init(model, batch):
  args = ((batch["condition"],) if isinstance(model, StochasticSegmentationNetwork)
          else (batch["target"], batch["condition"]))
  return model.init(jax.random.PRNGKey(0), *args)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_prediction_shapes(name):
  model, batch = MODELS[name](), _batch()
  params = _init(model, batch)
  predict = predictors.predictor(model)
  samples = jax.jit(predict.samples, static_argnums=3)(
      params, batch["condition"], jax.random.PRNGKey(1), 5)
  chex.assert_shape(samples.logits, (5, BATCH, SIZE * SIZE))
  chex.assert_shape(jax.jit(predict.point)(params, batch["condition"]).logits,
                    (BATCH, SIZE * SIZE))
  nll = -jax.jit(predict.log_likelihood, static_argnums=3)(
      params, batch, jax.random.PRNGKey(2), 7)
  chex.assert_shape(nll, (BATCH,))
  assert np.all(np.isfinite(nll)) and np.all(nll > 0)
  # Samples differ from one another (the latent, or the logits' noise, acts).
  assert float(jnp.std(samples.logits, axis=0).mean()) > 1e-4


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_parameter_learns_and_steps_lower_the_loss(name):
  model, batch = MODELS[name](), _batch()
  params = _init(model, batch)
  objective = objectives.model_objective(model, predictors.predictor(model),
                                         likelihood_samples=4)
  loss_fn = jax.jit(lambda p, rng: jnp.mean(objective(p, batch, rng)[0]))
  grads = jax.jit(jax.grad(loss_fn))(params, jax.random.PRNGKey(3))
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  silent = [jax.tree_util.keystr(path) for path, g in flat
            if not float(jnp.max(jnp.abs(g))) > 0]
  assert not silent, f"parameters without a gradient: {silent}"

  optimizer = optax.adam(1e-2)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, rng):
    loss, grads = jax.value_and_grad(loss_fn)(params, rng)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  # The same noise before and after: the loss moves with the parameters only.
  fixed = jax.random.PRNGKey(4)
  before = float(loss_fn(params, fixed))
  for i in range(20):
    params, opt_state, _ = step(params, opt_state, jax.random.PRNGKey(10 + i))
  assert float(loss_fn(params, fixed)) < 0.9 * before


@pytest.mark.parametrize("name", ["hpu_net", "phiseg"])
def test_hierarchical_terms_and_importance_sampling(name):
  model, batch = MODELS[name](), _batch()
  params = _init(model, batch)
  likelihoods, kl = model.apply(params, batch["target"], batch["condition"],
                                jax.random.PRNGKey(5), method="elbo_terms")
  chex.assert_shape(kl, (BATCH,))
  assert np.all(np.asarray(kl) >= 0)
  assert len(likelihoods) == (2 if name == "phiseg" else 1)  # One per level.
  for likelihood in likelihoods:
    chex.assert_shape(likelihood.logits, (BATCH, SIZE * SIZE))
  # The importance-sampled log p(y|x) is at least the ELBO on average and
  # tightens with more samples (Burda et al.): K = 1 is the ELBO itself, that
  # of the model's prediction (PHiSeg's training loss adds its coarser levels).
  def negative_elbo(key):
    likelihoods, kl = model.apply(params, batch["target"], batch["condition"], key,
                                  method="elbo_terms")
    return objectives.reconstruction_loss(likelihoods[-1], batch) + kl
  keys = jax.random.split(jax.random.PRNGKey(6), 20)
  elbos = -np.asarray(jax.lax.map(jax.jit(negative_elbo), keys))  # [20, B]
  ll = jax.jit(lambda key, k: model.apply(
      params, batch["target"], batch["condition"], key, k,
      method="log_likelihood"), static_argnums=1)
  ones = np.asarray(jax.lax.map(lambda key: ll(key, 1), keys))
  error = np.sqrt((ones.var(0) + elbos.var(0)) / len(keys))
  assert np.all(np.abs(ones.mean(0) - elbos.mean(0)) < 4 * error + 1e-3)
  assert np.all(np.asarray(ll(keys[0], 50)) > elbos.mean(0))


def _ssn_log_likelihood_by_quadrature(mean, variance, factor, target, points=80):
  """log E[prod_p Bernoulli(y_p; sigmoid(eta_p))] for eta ~ N(mean, F F^T +
  diag(variance)) with a rank-1 F: given the factor's one normal draw the
  pixels are independent, so two nested 1-D Gauss-Hermite quadratures."""
  nodes, weights = np.polynomial.hermite_e.hermegauss(points)
  weights = weights / weights.sum()
  sign = 2 * target - 1
  total = 0.0
  for u, w in zip(nodes, weights):
    centre = mean + factor[:, 0] * u  # [P]
    eta = centre[:, None] + np.sqrt(variance)[:, None] * nodes[None]  # [P, Q]
    per_pixel = (1 / (1 + np.exp(-sign[:, None] * eta))) @ weights  # [P]
    total += w * np.prod(per_pixel)
  return np.log(total)


def test_ssn_monte_carlo_likelihood_matches_quadrature():
  model = StochasticSegmentationNetwork((2,), 1, rank=1)
  image = jnp.asarray(np.random.default_rng(0).random((1, 2, 2, 1)), jnp.float32)
  params = model.init(jax.random.PRNGKey(0), image)
  # Spread the logits so the Gaussian matters: scale the heads' kernels.
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: x * (300.0 if "factor" in jax.tree_util.keystr(path)
                           else 3.0), params)
  mean, variance, factor = (np.asarray(a[0], np.float64) for a in model.apply(
      params, image, method="logit_distribution"))
  assert np.abs(factor).max() > 0.1 and variance.min() > 0.1
  target = np.array([1.0, 0.0, 1.0, 1.0])
  exact = _ssn_log_likelihood_by_quadrature(mean, variance, factor, target)
  estimate = float(model.apply(params, jnp.asarray(target[None], jnp.float32), image,
                               jax.random.PRNGKey(1), 40_000,
                               method="log_likelihood")[0])
  # 40,000 draws: the estimate's standard error is well under 0.01 nats here.
  assert abs(estimate - exact) < 0.01, (estimate, exact)
  # Antithetic pairs: the draws' mean is the mean exactly.
  draws = model.apply(params, image, jax.random.PRNGKey(2), 6, method="draw_logits")
  np.testing.assert_allclose(np.asarray(draws.mean(0)[0]), mean, atol=1e-5)


def test_top_k_reconstruction():
  logits = jnp.asarray([[4.0, -4.0, 0.0, 2.0]])
  target = jnp.asarray([[1.0, 1.0, 0.0, 0.0]])
  batch = {"target": target}
  likelihood = predictors.as_likelihood(logits)
  per_pixel = -np.asarray(jax.nn.log_sigmoid(jnp.where(target > 0, logits, -logits)))[0]
  full = objectives.reconstruction_loss(likelihood, batch)
  np.testing.assert_allclose(full, [per_pixel.sum()], rtol=1e-6)
  # The worst half: pixels 1 and 3, their mean times the 4 pixels.
  half = objectives.reconstruction_loss(likelihood, batch, top_k_fraction=0.5)
  worst = np.sort(per_pixel)[-2:]
  np.testing.assert_allclose(half, [worst.mean() * 4], rtol=1e-6)


@pytest.mark.parametrize("name, block, field, value, words", [
    ("hpu_net", "hpu_network", "latent_channels", (1,) * 6, "latent_channels"),
    ("phiseg", "phiseg_network", "latent_levels", 9, "latent_levels"),
    ("ssn", "ssn_network", "rank", 0, "rank"),
    ("hpu_net", "hpu_network", "channels", (4,) * 7, "image_size")])
def test_impossible_networks_are_one_line(name, block, field, value, words):
  config = tiny_prob_unet_config(model=name)
  config[block][field] = value
  with pytest.raises(ConfigError, match=words) as error:
    ambiguous_segmentation.BUILDERS[name](config)
  assert "\n" not in str(error.value)


def test_a_models_recipe_is_set_over_the_config():
  config = tiny_prob_unet_config(model="hpu_net")
  applied = configs.with_recipe(config)
  assert applied.geco.enabled and not config.geco.enabled  # A copy.
  assert applied.num_epochs == config.recipes.hpu_net.num_epochs
  assert configs.with_recipe(applied).to_dict() == applied.to_dict()
  config.recipes.hpu_net.geco.kappa = 7.0  # --config.recipes.hpu_net.geco.kappa=7
  assert configs.with_recipe(config).geco.kappa == 7.0
  assert configs.with_recipe(tiny_prob_unet_config(model="unet")).to_dict() == (
      tiny_prob_unet_config(model="unet").to_dict())
  config.recipes.hpu_net.update({"top_k": 0.5})
  with pytest.raises(ConfigError, match="recipes.hpu_net.top_k names no config key"):
    configs.with_recipe(config)


@pytest.mark.parametrize("name", ["hpu_net", "phiseg", "ssn"])
def test_each_model_gets_every_ambiguity_figure_with_its_recipe(
    name, tiny_mnist_dir, tmp_path, capsys):
  from cvae_jax import runner  # pylint: disable=g-import-not-at-top
  from cvae_jax.tasks import prob_unet  # pylint: disable=g-import-not-at-top
  config = tiny_prob_unet_config(model=name, data_dir=str(tiny_mnist_dir),
                                 download=False, validation_size=100)
  config.data.update(max_train_examples=16, max_eval_examples=8)
  if "num_epochs" in config.recipes.get(name, {}):
    config.recipes[name].num_epochs = 1  # As --config.recipes.<model>.num_epochs=1.
  results = runner.run(prob_unet.TASK, config, tmp_path)
  figures = results["test"]
  for key in ("ged_4", "ged_unbiased_4", "floor_ged_4", "hungarian_iou", "nll",
              "ideal_nll", "ece", "mode_tv", "mode_tv_pooled", "unmatched",
              "marginal_nll"):
    assert np.isfinite(figures[key]), key
  assert results["estimators"]["nll"].startswith(
      predictors.predictor(prob_unet.make_model(config)).log_likelihood_label)
  recipe = configs.recipe_of(config)
  assert all(configs.flatten(results["config"])[k] == v for k, v in recipe.items())
  if recipe:
    assert f"{name}'s recipe: " in capsys.readouterr().out
