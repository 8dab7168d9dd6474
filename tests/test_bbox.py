"""Bounding boxes: box metrics by hand, the Gaussian and mixture likelihoods,
the offline MNIST box set, the VOC loader on mock data, models, config
errors, devices, and tiny end-to-end runs of every model kind."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from cvae_jax import box_metrics, distributions, objectives, predictors, runner
from cvae_jax.data import mnist_boxes
from cvae_jax.evaluators import boxes as box_evaluators
from cvae_jax.errors import ConfigError
from cvae_jax.tasks import bbox
from cvae_jax.training import InMemoryData
from helpers import BOX_SIZE as SIZE
from helpers import (assert_one_and_four_devices_train_alike, box_arrays, box_digits,
                     init_box_model, tiny_box_config)


class BoxIouTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_by_hand(self):
    box = lambda x0, y0, x1, y1: [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
    a = np.array([box(0, 0, 2, 2), box(0, 0, 4, 4), box(1, 1, 3, 3), box(0, 0, 2, 2),
                  box(0, 0, 2, 2), box(1, 1, 1, 3), box(1, 1, 1, 1), box(0, 0, 2, 2)])
    b = np.array([box(3, 3, 4, 4),  # Disjoint: 0.
                  box(1, 1, 3, 3),  # Contained: 4 / 16.
                  box(1, 1, 3, 3),  # Identical: 1.
                  box(2, 0, 4, 2),  # Touching edges: 0.
                  box(2, 2, 3, 3),  # Touching corners: 0.
                  box(0, 0, 2, 4),  # Zero-area line inside a box: 0.
                  box(1, 1, 1, 1),  # Two identical points: 0 (0 / 0).
                  box(1, 0, 3, 2)])  # Half overlap: 2 / 6.
    iou = self.variant(box_metrics.box_iou)(jnp.asarray(a), jnp.asarray(b))
    np.testing.assert_allclose(iou, [0, 0.25, 1, 0, 0, 0, 0, 1 / 3], atol=1e-6)
    # Symmetric, and broadcasting [2, 1, 4] against [8, 4].
    np.testing.assert_allclose(box_metrics.box_iou(jnp.asarray(b), jnp.asarray(a)), iou,
                               atol=1e-6)
    chex.assert_shape(box_metrics.box_iou(jnp.asarray(a)[:2, None], jnp.asarray(b)), (2, 8))

  @chex.variants(with_jit=True, without_jit=True)
  def test_coverage_precision_and_best_of_on_constructed_samples(self):
    valid = jnp.array([[[0.2, 0.2, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.2, 0.7, 0.2, 0.2]],
                       [[0.5, 0.5, 0.4, 0.4], [0, 0, 0, 0], [0, 0, 0, 0]]])
    mask = jnp.array([[True, True, True], [True, False, False]])
    far = [0.9, 0.1, 0.05, 0.05]
    samples = jnp.array([  # [K=4, B=2, 4]
        [[0.2, 0.2, 0.2, 0.2], [0.5, 0.5, 0.4, 0.4]],    # exact hits
        [[0.21, 0.2, 0.2, 0.2], far],                    # 2nd hit of box 0
        [[0.7, 0.7, 0.2, 0.3], far],                     # IoU 2/3 with box 1
        [far, [0.0, 0.0, 0.0, 0.0]]])                    # misses (a padding twin)
    fns = {name: self.variant(getattr(box_metrics, name))
           for name in ("coverage", "precision", "best_of_k_iou")}
    # Canvas 0: boxes 0 and 1 of 3 matched; 3 of 4 samples match something.
    # Canvas 1: its one box matched; 1 of 4 samples (padding rows never match).
    np.testing.assert_allclose(fns["coverage"](samples, valid, mask), [2 / 3, 1.0])
    np.testing.assert_allclose(fns["precision"](samples, valid, mask), [0.75, 0.25])
    np.testing.assert_allclose(fns["best_of_k_iou"](samples[:1], valid, mask), [1, 1])
    np.testing.assert_allclose(fns["best_of_k_iou"](samples[2:3], valid, mask),
                               [2 / 3, 0], atol=1e-6)
    # An empty valid set: nothing to cover, no sample matches.
    empty = jnp.zeros_like(mask)
    np.testing.assert_allclose(fns["coverage"](samples, valid, empty), [0, 0])
    np.testing.assert_allclose(fns["precision"](samples, valid, empty), [0, 0])


class LikelihoodTest(chex.TestCase):

  def test_gaussian_and_mixture_against_scipy(self):
    rng = np.random.default_rng(0)
    y = rng.random((3, 4)).astype(np.float32)
    means = rng.random((3, 2, 4)).astype(np.float32)
    log_variances = rng.normal(-3, 0.5, (3, 2, 4)).astype(np.float32)
    logits = rng.normal(size=(3, 2)).astype(np.float32)
    mixture = distributions.GaussianMixture(
        jnp.asarray(logits), distributions.DiagonalGaussian(jnp.asarray(means),
                                                            jnp.asarray(log_variances)))
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = np.log(sum(
        weights[:, k] * np.prod(stats.norm.pdf(y, means[:, k], np.exp(log_variances[:, k] / 2)),
                                axis=-1) for k in range(2)))
    got = distributions.log_likelihood(mixture, jnp.asarray(y))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    gaussian = distributions.DiagonalGaussian(jnp.asarray(means[:, 0]),
                                              jnp.asarray(log_variances[:, 0]))
    np.testing.assert_allclose(
        distributions.log_likelihood(gaussian, jnp.asarray(y)),
        stats.norm.logpdf(y, means[:, 0], np.exp(log_variances[:, 0] / 2)).sum(-1),
        rtol=1e-4)
    with pytest.raises(ValueError, match="Bernoulli targets only"):
      distributions.log_likelihood(gaussian, jnp.asarray(y), mask=jnp.ones(4))


class OfflineSetTest(chex.TestCase):

  def test_digits_are_where_their_boxes_say(self):
    digits, labels = box_digits(60)
    spec = mnist_boxes.CanvasSpec(size=SIZE, max_box_iou=0.1)
    a = mnist_boxes.draw_canvases(digits, labels, spec, np.random.default_rng(3))
    n = len(a["image"])
    chex.assert_shape([a["image"]], (n, SIZE, SIZE, 1))
    chex.assert_shape([a["boxes"]], (n, 4, 4))
    counts = (a["labels"] >= 0).sum(axis=1)
    assert counts.min() >= 2 and counts.max() <= 4 and counts.sum() <= 60
    assert np.all((a["query"] >= 0) & (a["query"] < counts))
    used = 0
    for image, boxes, box_labels, count in zip(a["image"][..., 0], a["boxes"],
                                               a["labels"], counts):
      inside = np.zeros_like(image, bool)
      for slot in range(count):
        cx, cy, w, h = boxes[slot] * SIZE
        x0, y0, x1, y1 = (int(round(v)) for v in (cx - w / 2, cy - h / 2,
                                                  cx + w / 2, cy + h / 2))
        window = image[y0:y1, x0:x1] > 0
        # Tight: ink on each of the box's four edges.
        assert window[0].any() and window[-1].any()
        assert window[:, 0].any() and window[:, -1].any()
        assert (h, w) == tuple(np.array(mnist_boxes.digit_box(digits[used + slot])[2:])
                               - mnist_boxes.digit_box(digits[used + slot])[:2])
        inside[y0:y1, x0:x1] = True
      np.testing.assert_array_equal(box_labels[:count], labels[used:used + count])
      used += count
      assert np.all(image[~inside] == 0)  # Background outside every box.
      ious = box_metrics.box_iou(jnp.asarray(boxes[:count, None]),
                                 jnp.asarray(boxes[None, :count]))
      assert float(jnp.max(ious - jnp.eye(count))) <= 0.1 + 1e-6
    b = mnist_boxes.draw_canvases(digits, labels, spec, np.random.default_rng(3))
    c = mnist_boxes.draw_canvases(digits, labels, spec, np.random.default_rng(4))
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a["image"], c["image"])

  def test_training_targets_are_valid_boxes_and_classes_select_them(self):
    arrays = {k: jnp.asarray(v) for k, v in box_arrays(8).items()}
    for condition in bbox.CONDITIONS:
      config = tiny_box_config(condition=condition)
      batch, valid = bbox.objective_batch(config, arrays, jax.random.PRNGKey(0))
      iou = box_metrics.box_iou(batch["target"][:, None], arrays["boxes"])
      hit = jnp.any((iou > 0.999) & valid, axis=1)
      assert bool(jnp.all(hit))
      if condition == "class":
        labels = np.asarray(arrays["labels"])
        np.testing.assert_array_equal(
            valid, (labels >= 0) & (labels == np.asarray(batch["condition"]["class"])[:, None]))
      else:
        np.testing.assert_array_equal(valid, arrays["labels"] >= 0)
    # Evaluation asks for the fixed query box.
    batch, _ = bbox.objective_batch(tiny_box_config(), arrays, None)
    np.testing.assert_allclose(
        batch["target"], np.asarray(arrays["boxes"])[np.arange(8), np.asarray(arrays["query"])])


class ModelTest(chex.TestCase):

  def test_cvae_shapes_and_class_embedding(self):
    config = tiny_box_config(condition="class")
    model, params, batch = init_box_model(config, box_arrays())
    z = jax.random.normal(jax.random.PRNGKey(1), (3, 8, config.network.latent))
    boxes = model.apply(params, z, batch["condition"], method="generation")
    chex.assert_shape([boxes.mean, boxes.log_variance], (3, 8, 4))
    np.testing.assert_allclose(boxes.log_variance, 2 * np.log(0.02), rtol=1e-6)
    other = dict(batch["condition"], **{"class": (batch["condition"]["class"] + 1) % 10})
    prior = model.apply(params, batch["condition"], method="prior")
    moved = model.apply(params, other, method="prior")
    assert float(jnp.max(jnp.abs(prior.mean - moved.mean))) > 1e-5
    nll = objectives.negative_elbo(model, params, batch, jax.random.PRNGKey(2)).loss
    chex.assert_shape(nll, (8,))

  def test_mdn_samples_are_component_means_and_regressor_repeats(self):
    arrays = box_arrays()
    config = tiny_box_config(model="mdn")
    model, params, batch = init_box_model(config, arrays)
    samples = box_evaluators.sample_boxes(predictors.predictor(model), params,
                                          batch["condition"], jax.random.PRNGKey(0), 50)
    means = model.apply(params, batch["condition"]).components.mean  # [B, C, 4]
    fixed = bbox.make_model(tiny_box_config(model="mdn", **{"network.mdn_box_std": 0.03}))
    variances = fixed.apply(params, batch["condition"]).components.log_variance
    np.testing.assert_allclose(variances, 2 * np.log(0.03), rtol=1e-6)
    distance = jnp.min(jnp.abs(samples[:, :, None] - means[None]).sum(-1), axis=-1)
    assert float(jnp.max(distance)) < 1e-6
    config = tiny_box_config(model="regressor")
    model, params, batch = init_box_model(config, arrays)
    samples = box_evaluators.sample_boxes(predictors.predictor(model), params,
                                          batch["condition"], jax.random.PRNGKey(0), 3)
    chex.assert_trees_all_equal(samples[0], samples[2])
    assert float(jnp.min(model.apply(params, batch["condition"]).log_variance)) >= 2 * np.log(
        config.network.min_std) - 1e-5


@pytest.mark.parametrize("overrides, expected", [
    ({"image_size": 20}, "image_size=20 is too small for an MNIST digit"),
    ({"data.max_digits": 5}, "data.max_digits=5 digits do not fit on a 56 x 56"),
    ({"data.min_digits": 3, "data.max_digits": 2}, "1 <= min <= max"),
    ({"eval.num_box_samples": 0}, "eval.num_box_samples must be a positive integer"),
    ({"eval.best_of": (0, 4)}, "eval.best_of (0, 4) must be sample counts in"),
    ({"network.num_components": 0}, "network.num_components must be a positive"),
    ({"model": "yolo"}, "model must be one of regressor, mdn, cvae, hybrid"),
    ({"condition": "text"}, "condition must be one of image, class"),
    ({"condition": "class", "eval.figure_class": 10},
     "eval.figure_class must be -1 (the queried box's class) or a class in 0-9"),
    ({"network.cvae_box_std": -1.0}, "network.cvae_box_std must be in [0, 0.1)"),
    ({"network.mdn_box_std": 0.5}, "network.mdn_box_std must be in [0, 0.1)"),
    ({"batch_size": 6}, "does not divide by the 4 local devices"),
])
def test_impossible_settings_are_one_line_config_errors(tmp_path, overrides, expected):
  with pytest.raises(ConfigError) as error:
    runner.check(bbox.TASK, tiny_box_config(**overrides), tmp_path / "w")
  assert expected in str(error.value)
  assert "\n" not in str(error.value)


def test_one_and_four_devices_train_to_the_same_parameters(tmp_path):
  # The MDN: the smallest graph to compile that draws a target box per canvas
  # inside the sharded step (the trainer's device equality for a CVAE is in
  # tests/test_segmentation.py).
  config = tiny_box_config(model="mdn", condition="class")
  config.early_stopping_metric = ""
  model, _, batch = init_box_model(config, box_arrays())
  init_fn = lambda rng: model.init(rng, jax.tree.map(lambda a: a[:1], batch["condition"]))
  data = InMemoryData(box_arrays(16, seed=1))
  assert_one_and_four_devices_train_alike(
      config, tmp_path, init_fn, bbox.TASK.loss_fn(config, model), data)


# "hybrid" runs the CVAE objective end to end (with the GSNN term); a
# separate "cvae" run would add 20 s of compilation to CI for no new code path.
@pytest.mark.parametrize("model_kind, condition", [
    ("regressor", "image"), ("mdn", "class"), ("hybrid", "class")])
def test_end_to_end_on_tiny_mnist(tmp_path, tiny_mnist_dir, model_kind, condition):
  config = tiny_box_config(model=model_kind, condition=condition,
                           data_dir=str(tiny_mnist_dir), download=False, validation_size=100)
  config.data.update(max_train_examples=32, max_eval_examples=16)
  if condition == "class":
    config.eval.figure_class = 3
  results = bbox.train_and_evaluate(config, tmp_path / model_kind)
  saved = json.loads((tmp_path / model_kind / "results.json").read_text())
  assert saved["test"] == results["test"] and results["num_test_images"] == 16
  figures = results["test"]
  assert figures["best_of_4_iou"] >= figures["best_of_1_iou"] >= 0
  assert 0 <= figures["coverage_at_4"] <= 1 and 0 <= figures["precision_at_4"] <= 1
  nll = "nll_exact" if model_kind in ("regressor", "mdn") else "nll_importance_sampled"
  assert nll in figures and all(np.isfinite(v) for v in figures.values())
  assert (tmp_path / model_kind / "boxes.png").stat().st_size > 0


def test_voc_loader_on_mock_data(tmp_path):
  """voc/2007 through the box interface, on TFDS's mock examples (random
  images, boxes and labels; the dataset's own features)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from cvae_jax.data import tfds_boxes  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    arrays = tfds_boxes.load_box_arrays("voc/2007", "validation", tmp_path, 32,
                                        max_objects=3, seed=1)
  n = len(arrays["image"])
  assert 0 < n <= 6
  chex.assert_shape([arrays["image"]], (n, 32, 32, 3))
  chex.assert_shape([arrays["boxes"]], (n, 3, 4))
  chex.assert_type([arrays["image"], arrays["boxes"], arrays["labels"], arrays["query"]],
                   [np.float32, np.float32, np.int32, np.int32])
  assert 0 <= arrays["image"].min() and arrays["image"].max() <= 1
  valid = arrays["labels"] >= 0
  assert valid[:, 0].all()  # Images without objects are skipped.
  assert np.all(arrays["labels"][valid] < tfds_boxes.NUM_CLASSES)
  assert np.all(arrays["boxes"][~valid] == 0)
  boxes = arrays["boxes"][valid]  # Centres inside, sizes >= 0, corners in [0, 1].
  assert np.all(boxes[:, 2:] >= 0)
  assert np.all(boxes[:, :2] - boxes[:, 2:] / 2 >= -1e-6)
  assert np.all(boxes[:, :2] + boxes[:, 2:] / 2 <= 1 + 1e-6)
  assert np.all(arrays["query"] < valid.sum(axis=1))
