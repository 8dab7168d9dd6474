"""Sohn et al.'s conv segmentation CVAE: wiring, objectives, metrics, the
offline MNIST set, config errors, devices, and tiny end-to-end runs."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from cvae_jax import distributions, metrics, objectives, runner
from cvae_jax.data import augmentation, mnist_segmentation
from cvae_jax.errors import ConfigError
from cvae_jax.models import segmentation as seg_models
from cvae_jax.models.cvae import CVAE
from cvae_jax.tasks import segmentation
from cvae_jax.training import InMemoryData
from helpers import SEGMENTATION_SIZE as SIZE
from helpers import (assert_one_and_four_devices_train_alike, segmentation_arrays,
                     tiny_segmentation_config)


def _model_and_params(config):
  model = segmentation.make_model(config)
  arrays = segmentation_arrays()
  batch = segmentation.objective_batch(config, jnp.asarray(arrays["image"]),
                                       jnp.asarray(arrays["masks"][:, 0]), False)
  if config.model == "baseline":
    return model, model.init(jax.random.PRNGKey(0), batch["condition"]), batch
  return model, model.init(jax.random.PRNGKey(0), batch["target"],
                           batch["condition"]), batch


class WiringTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_output_is_baseline_plus_generation_logits(self):
    for levels in (0, 1):
      config = tiny_segmentation_config(multiscale_levels=levels)
      model, params, batch = _model_and_params(config)
      z = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 4 * 4 * 2))
      generation = self.variant(lambda p, z, x: model.apply(
          p, z, x, method="generation").logits)
      features = model.apply(params, batch["condition"], method="encode")
      correction = model.apply(params, z, features, method="correction")
      baseline = model.apply(params, batch["condition"],
                             method=lambda m, x: m.baseline(x).logits)
      logits = generation(params, z, batch["condition"])
      chex.assert_shape(logits, (3, 8, seg_models.pyramid_size(SIZE, SIZE, levels)))
      chex.assert_trees_all_close(logits, baseline[None] + correction, atol=1e-5)
      assert float(jnp.std(correction)) > 0 and float(jnp.std(baseline)) > 0

  def test_prior_sees_the_baseline_guess_without_gradient_and_never_y(self):
    config = tiny_segmentation_config()
    model, params, batch = _model_and_params(config)
    prior = model.apply(params, batch["condition"], method="prior")
    chex.assert_shape([prior.mean, prior.log_variance], (8, 4 * 4 * 2))
    # Another baseline changes the guess, hence the prior...
    other = jax.tree.map(lambda a: a * 1.5, params["params"]["baseline"])
    moved = model.apply({"params": {**params["params"], "baseline": other}},
                        batch["condition"], method="prior")
    assert float(jnp.max(jnp.abs(moved.mean - prior.mean))) > 1e-4
    # ...but passes it no gradient (the baseline learns from its own loss).
    grads = jax.grad(lambda p: jnp.sum(model.apply(
        p, batch["condition"], method="prior").mean))(params)
    assert all(float(jnp.max(jnp.abs(g))) == 0
               for g in jax.tree.leaves(grads["params"]["baseline"]))
    # The recognition net, which does see y, moves with it.
    q = model.apply(params, batch["target"], batch["condition"], method="recognition")
    q_other = model.apply(params, 1.0 - batch["target"], batch["condition"],
                          method="recognition")
    assert float(jnp.max(jnp.abs(q.mean - q_other.mean))) > 1e-4

  def test_mask_pyramid_and_weights(self):
    masks = jnp.zeros((2, 4, 4)).at[0, :2, :2].set(1.0).at[1, 0, 0].set(1.0)
    pyramid = seg_models.mask_pyramid(masks, 2)
    chex.assert_shape(pyramid, (2, seg_models.pyramid_size(4, 4, 2)))
    np.testing.assert_allclose(pyramid[0, 16:20], [1, 0, 0, 0])
    np.testing.assert_allclose(pyramid[1, 16:20], [0.25, 0, 0, 0])
    np.testing.assert_allclose(pyramid[:, 20], [0.25, 1 / 16])
    weights = seg_models.pyramid_weights(4, 4, 2, 0.5)
    np.testing.assert_allclose(weights, [1] * 16 + [0.5] * 5)


class _LatentBernoulli(CVAE):
  """p(z | x) = N(0, 1), y_i | z ~ Bernoulli(sigmoid(a_i z + b_i)), 1-D z:
  log p(y) by Gauss-Hermite quadrature is exact to float precision. No
  parameters (apply it with {})."""

  A = np.array([3.0, -2.0, 1.5, 2.5])
  B = np.array([0.5, 0.2, -1.0, 0.0])

  def prior_from_features(self, condition):
    return distributions.standard_normal_like(jnp.zeros((len(condition), 1)))

  def generation_from_features(self, z, condition):
    return distributions.Bernoulli(z * self.A + self.B + 0.0 * condition)

  def exact_log_likelihood(self, y):
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    logits = nodes[:, None] * self.A + self.B  # [nodes, pixels]
    log_p = (y[:, None] * logits[None] - np.logaddexp(0, logits)[None]).sum(-1)
    return special.logsumexp(log_p, b=weights / np.sqrt(2 * np.pi), axis=1)


class GsnnObjectiveTest(chex.TestCase):

  def test_single_sample_is_minus_log_likelihood_at_one_prior_draw(self):
    config = tiny_segmentation_config(model="gsnn")
    model, params, batch = _model_and_params(config)
    rng = jax.random.PRNGKey(3)
    prior = model.apply(params, batch["condition"], method="prior")
    z = distributions.sample_gaussian(rng, prior)
    expected = -objectives.target_log_likelihood(model, params, batch, z)
    got = objectives.gsnn_negative_log_likelihood(model, params, batch, rng, 1)
    chex.assert_trees_all_close(got, expected)
    # No KL: the recognition net's parameters get no gradient.
    grads = jax.grad(lambda p: jnp.sum(objectives.gsnn_negative_log_likelihood(
        model, p, batch, rng, 3)))(params)
    for name in ("recognition_encoder", "recognition_head"):
      assert all(float(jnp.max(jnp.abs(g))) == 0
                 for g in jax.tree.leaves(grads["params"][name]))
    hybrid = objectives.hybrid_objective(model, params, batch, rng, 0.0, 1)
    chex.assert_trees_all_close(hybrid, expected)

  def test_multi_sample_objective_is_an_upper_bound_that_tightens(self):
    model = _LatentBernoulli()
    y = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 1]], np.float32)
    batch = {"target": jnp.asarray(y), "condition": jnp.zeros((3, 4))}
    exact = -model.exact_log_likelihood(y)

    def expected_objective(s):
      keys = jax.random.split(jax.random.PRNGKey(s), 4000)
      values = jax.vmap(lambda k: objectives.gsnn_negative_log_likelihood(
          model, {}, batch, k, s))(keys)
      return np.asarray(jnp.mean(values, axis=0))
    one, ten, hundred = (expected_objective(s) for s in (1, 10, 100))
    # E[-log mean_s p(y|z_s)] >= -log p(y), decreasing in S (Burda et al.).
    assert np.all(one > ten) and np.all(ten > hundred), (one, ten, hundred)
    assert np.all(hundred > exact - 0.01), (hundred, exact)
    assert np.all(hundred - exact < 0.5 * (one - exact))

  def test_bad_sample_count(self):
    model = _LatentBernoulli()
    batch = {"target": jnp.ones((1, 4)), "condition": jnp.zeros((1, 4))}
    with pytest.raises(ValueError, match="positive integer"):
      objectives.gsnn_negative_log_likelihood(model, {}, batch,
                                              jax.random.PRNGKey(0), 0)


class MetricsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_iou_and_pixel_error_by_hand(self):
    truth = np.zeros((5, 4, 4), bool)
    prediction = np.zeros((5, 4, 4), bool)
    truth[0, :2, :2] = True; prediction[0, :2, :] = True  # 4 / 8.
    truth[1, 0, 0] = True  # Empty prediction of a non-empty truth: 0.
    prediction[2, 3, 3] = True  # Non-empty prediction of an empty truth: 0.
    # 3: both empty: 1 by convention.
    truth[4] = True; prediction[4] = True  # Identical: 1.
    iou = self.variant(metrics.intersection_over_union)(prediction, truth)
    np.testing.assert_allclose(iou, [0.5, 0.0, 0.0, 1.0, 1.0])
    error = self.variant(metrics.pixel_error)(prediction, truth)
    np.testing.assert_allclose(error, [4 / 16, 1 / 16, 1 / 16, 0.0, 0.0])

  def test_best_of_samples(self):
    truth = np.zeros((2, 4, 4), bool)
    truth[:, :2, :2] = True
    samples = np.zeros((3, 2, 4, 4), bool)
    samples[0, 0, :2, :2] = True  # Perfect for image 0.
    samples[1, 1, :1, :2] = True  # 2 / 4 for image 1.
    samples[2, 1, :2, :1] = True  # 2 / 4 for image 1.
    # Samples in the layout of every set of masks: [batch, S, H, W].
    np.testing.assert_allclose(
        metrics.best_of_samples_iou(np.swapaxes(samples, 0, 1), truth), [1.0, 0.5])


class OfflineSetTest(chex.TestCase):

  def _digits(self, n=6):
    rng = np.random.default_rng(0)
    digits = np.zeros((n, 28, 28), np.float32)
    digits[:, 6:22, 10:18] = rng.random((n, 16, 8)) * 0.5 + 0.5
    return digits

  def test_deterministic_under_a_seed_and_occlusion_hides_the_digit(self):
    spec = mnist_segmentation.CanvasSpec(occlusion_blocks=2, occlusion_size=8)
    a = mnist_segmentation.draw_canvases(self._digits(), spec, np.random.default_rng(5))
    b = mnist_segmentation.draw_canvases(self._digits(), spec, np.random.default_rng(5))
    c = mnist_segmentation.draw_canvases(self._digits(), spec, np.random.default_rng(6))
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a["image"], c["image"])
    chex.assert_shape(a["image"], (6, 32, 32, 1))
    chex.assert_shape(a["masks"], (6, 1, 32, 32))
    assert np.all(a["image"][..., 0][a["occluded"]] == 0)
    assert np.all(a["occluded"].sum(axis=(1, 2)) >= 64)  # At least one block.
    # The truth is the whole digit, under the blocks too.
    under = a["masks"][:, 0][a["occluded"]]
    assert under.sum() > 0
    # Every digit pixel is in the mask, at its offset; clutter is not.
    assert np.all(a["masks"].sum(axis=(1, 2, 3)) == 16 * 8)

  def test_no_occlusion_no_noise_no_clutter_is_the_digit(self):
    spec = mnist_segmentation.CanvasSpec(num_fragments=0, noise_std=0.0)
    a = mnist_segmentation.draw_canvases(self._digits(), spec, np.random.default_rng(1))
    np.testing.assert_array_equal(a["image"][..., 0] > 0.5, a["masks"][:, 0] > 0)
    assert not a["occluded"].any()


@pytest.mark.parametrize("overrides, expected", [
    ({"model": "unet"}, "model must be one of"),
    ({"dataset": "voc"}, "dataset must be one of"),
    ({"image_size": 18}, "cannot be downsampled evenly"),
    ({"occlusion.blocks": 1, "occlusion.size": 40},
     "occlusion.size=40 must be in 1..32 (the image side)"),
    ({"image_size": 16}, "image_size=16 is too small for an MNIST digit"),
    ({"input_omission_rate": 1.0}, "input_omission_rate must be in [0, 1)"),
    ({"input_omission_rate": -0.1}, "input_omission_rate must be in [0, 1)"),
    ({"batch_size": 6}, "does not divide by the 4 local devices"),
    ({"multiscale_levels": 5}, "multiscale_levels must be in"),
    ({"gsnn_samples": 0}, "gsnn_samples must be a positive integer"),
    ({"eval.best_of": (1, 500)}, "eval.best_of"),
    ({"network.decoder_kernels": (3, 3)}, "network.decoder_kernels needs 3 sizes"),
])
def test_impossible_settings_are_config_errors(tmp_path, overrides, expected):
  with pytest.raises(ConfigError) as error:
    runner.check(segmentation.TASK,
        tiny_segmentation_config(**{"image_size": 32, **overrides}), tmp_path / "w")
  assert expected in str(error.value)
  assert "\n" not in str(error.value)


class AugmentTest(chex.TestCase):

  def test_omission_noise_and_flips_only_in_training(self):
    config = tiny_segmentation_config(input_omission_rate=0.5, horizontal_flip=True)
    arrays = {k: jnp.asarray(v) for k, v in segmentation_arrays().items()}
    images, masks = augmentation.augment(arrays["image"], arrays["masks"][:, 0],
                                         jax.random.PRNGKey(0), 0.5, True)
    dropped = float(jnp.mean(images == 0))
    assert 0.35 < dropped < 0.65, dropped
    # Evaluation (validation and test) never augments: the validation loss
    # is the same with and without omission noise in the config.
    model, params, _ = _model_and_params(config)
    plain = tiny_segmentation_config()
    losses = [segmentation.objective(c, model)(
        params, segmentation.evaluation_batch(c, arrays), jax.random.PRNGKey(1))
              for c in (config, plain)]
    chex.assert_trees_all_close(losses[0], losses[1])
    # Training does: the same step with and without noise differ.
    train_losses = [segmentation.TASK.loss_fn(c, model)(
        params, arrays, jax.random.PRNGKey(1))[0] for c in (config, plain)]
    assert abs(float(train_losses[0] - train_losses[1])) > 1e-3


def test_one_and_four_devices_train_to_the_same_parameters(tmp_path):
  config = tiny_segmentation_config(model="cvae", input_omission_rate=0.3, num_epochs=1)
  config.early_stopping_metric = ""
  model, params, batch = _model_and_params(config)
  del params
  init_fn = lambda rng: model.init(rng, batch["target"][:1], batch["condition"][:1])
  data = InMemoryData(segmentation_arrays(32, seed=1))
  assert_one_and_four_devices_train_alike(
      config, tmp_path, init_fn, segmentation.TASK.loss_fn(config, model), data)


@pytest.mark.parametrize("model_kind", ["baseline", "hybrid"])
def test_end_to_end_on_tiny_mnist(tmp_path, tiny_mnist_dir, model_kind):
  config = tiny_segmentation_config(model=model_kind, data_dir=str(tiny_mnist_dir),
                                    download=False, validation_size=100, image_size=32,
                                    multiscale_levels=1, input_omission_rate=0.2,
                                    gsnn_samples=2)
  config.occlusion.blocks = 1
  config.data.update(max_train_examples=64, max_eval_examples=16)
  results = segmentation.train_and_evaluate(config, tmp_path / model_kind)
  saved = json.loads((tmp_path / model_kind / "results.json").read_text())
  assert saved["test"] == results["test"]
  figures = results["test"]
  assert 0 <= figures["pixel_error"] <= 1 and 0 <= figures["iou"] <= 1
  assert figures["best_of_4_iou"] >= figures["best_of_1_iou"]
  expected = {"nll_exact"} if model_kind == "baseline" else {
      "nll_prior_mean", "nll_prior_monte_carlo", "nll_importance_sampled"}
  assert expected <= set(figures)
  assert all(np.isfinite(v) for v in figures.values())
  assert (tmp_path / model_kind / "panel.png").stat().st_size > 0


def test_cub_config_trains_a_few_steps_on_mock_data(tmp_path):
  """The paper's CUB config (128 x 128, the authors' channel sizes) end to
  end on TFDS's mock caltech_birds2011: loader, model, trainer, evaluation."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from train.configs import segmentation_cub  # pylint: disable=g-import-not-at-top
  config = segmentation_cub.get_config()
  config.update(batch_size=4, num_epochs=1, checkpoint_every_steps=2,
                image_size=64,  # The paper's net at 1/4 of the pixels: CI time.
                log_every_steps=1, data_dir=str(tmp_path / "tfds"))
  config.data.update(max_train_examples=8, max_eval_examples=4)
  config.eval.update(batch_size=4, num_samples=2, chunk_size=2, best_of=(1, 2),
                     num_images=4, figure_images=2, figure_samples=1)
  segmentation.validate(config, tmp_path / "cub")
  with tfds.testing.mock_data(num_examples=10,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    results = segmentation.train_and_evaluate(config, tmp_path / "cub")
  assert results["steps"] == 2 and results["dataset"] == "caltech_birds2011"
  assert results["num_test_images"] == 4
  assert all(np.isfinite(v) for v in results["test"].values())
  assert (tmp_path / "cub" / "panel.png").stat().st_size > 0
