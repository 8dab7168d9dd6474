"""The tasks' own evaluators on their own: each run directly on an
initialised (untrained) model and generated test arrays, checked for what
must hold whatever the weights: ranges, best-of-S monotone in S, figures
that two evaluators share agree, the reference unit of the label test loss."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cvae_jax import runner
from cvae_jax.tasks import bbox, mnist_label, prob_unet, segmentation
from helpers import (box_arrays, init_box_model, prob_unet_arrays, segmentation_arrays,
                     tiny_box_config, tiny_prob_unet_config, tiny_segmentation_config)
from train.configs import mnist_label as label_config


def _evaluate(task, config, model, params, test, tmp_path, seed=0) -> dict:
  """Every evaluator of the config's evals, as the runner runs them."""
  figures = {}
  for evaluator in runner.build_evaluators(task, config, model):
    values = evaluator.run(params, test, jax.random.PRNGKey(seed + evaluator.index),
                           tmp_path)
    figures[evaluator.name] = {k: np.asarray(v) for k, v in values.items()}
  return figures


def _segmentation(model_kind):
  config = tiny_segmentation_config(model=model_kind)
  model = segmentation.make_model(config)
  test = segmentation_arrays(8)
  example = segmentation.TASK.batch(
      config, {k: jnp.asarray(v[:1]) for k, v in test.items()})
  if model_kind == "baseline":
    params = model.init(jax.random.PRNGKey(0), example["condition"])
  else:
    params = model.init(jax.random.PRNGKey(0), example["target"], example["condition"])
  return config, model, params, test


def test_segmentation_cvae_evaluators(tmp_path):
  config, model, params, test = _segmentation("cvae")
  figures = _evaluate(segmentation.TASK, config, model, params, test, tmp_path)
  assert list(figures) == ["point", "best_of", "prior_monte_carlo",
                           "importance_sampled", "panel"]
  at_mean = figures["point"]
  assert np.all((0 <= at_mean["pixel_error"]) & (at_mean["pixel_error"] <= 1))
  assert np.all((0 <= at_mean["iou"]) & (at_mean["iou"] <= 1))
  assert np.all(at_mean["nll_prior_mean"] > 0)
  best = figures["best_of"]
  assert np.all(best["best_of_1_iou"] <= best["best_of_4_iou"])
  assert np.all(np.isfinite(figures["prior_monte_carlo"]["nll_prior_monte_carlo"]))
  assert np.all(np.isfinite(figures["importance_sampled"]["nll_importance_sampled"]))
  assert figures["panel"] == {} and (tmp_path / "panel.png").stat().st_size > 0


def test_segmentation_baseline_best_of_is_its_one_iou(tmp_path):
  config, model, params, test = _segmentation("baseline")
  figures = _evaluate(segmentation.TASK, config, model, params, test, tmp_path)
  assert list(figures) == ["point", "best_of", "panel"]
  values = figures["point"]
  for s in config.eval.best_of:
    np.testing.assert_array_equal(figures["best_of"][f"best_of_{s}_iou"],
                                  values["iou"])
  assert np.all(values["nll_exact"] > 0)


@pytest.mark.parametrize("model_kind", ["cvae", "mdn"])
def test_box_evaluators(model_kind, tmp_path):
  config = tiny_box_config(model=model_kind)
  test = box_arrays(8)
  model, params, _ = init_box_model(config, test)
  figures = _evaluate(bbox.TASK, config, model, params, test, tmp_path)
  nll = "importance_sampled" if model_kind == "cvae" else "exact"
  assert list(figures) == ["boxes", nll, "pictures"]
  boxes, k = figures["boxes"], config.eval.num_box_samples
  ious = [boxes[f"best_of_{s}_iou"] for s in config.eval.best_of]
  for fewer, more in zip(ious, ious[1:]):
    assert np.all(fewer <= more + 1e-6)
  for name in (f"coverage_at_{k}", f"precision_at_{k}", *[f"best_of_{s}_iou"
                                                         for s in config.eval.best_of]):
    assert np.all((0 <= boxes[name]) & (boxes[name] <= 1)), name
  assert np.all(boxes["valid_boxes"] >= 1)
  (values,) = figures[nll].values()
  assert values.shape == (8,) and np.all(np.isfinite(values))
  assert (tmp_path / "boxes.png").stat().st_size > 0


def test_prob_unet_evaluators(tmp_path):
  config = tiny_prob_unet_config(image_size=16)
  config.dataset = "lidc"  # Graders only (no known distribution to compare to).
  config.eval.update(num_samples=4, chunk_size=4, ged_samples=(1, 4),
                     hungarian_samples=2, batch_size=4, figure_images=2,
                     figure_samples=2)
  model = prob_unet.make_model(config)
  test = prob_unet_arrays(4)
  example = prob_unet.objective_batch(jnp.asarray(test["image"][:1]),
                                      jnp.asarray(test["masks"][:1, 0]))
  params = model.init(jax.random.PRNGKey(0), example["target"], example["condition"])
  figures = _evaluate(prob_unet.TASK, config, model, params, test, tmp_path)
  assert list(figures) == ["samples", "likelihoods", "panel", "calibration", "modes"]
  assert figures["modes"] == {}  # No known candidates on LIDC.
  calibration = figures["calibration"]
  assert np.all((0 <= calibration["ece"]) & (calibration["ece"] <= 1))
  assert np.all((0 <= calibration["dice"]) & (calibration["dice"] <= 1))
  assert 0 <= calibration["variance_ncc_defined"] <= 1
  if calibration["variance_ncc_defined"]:
    assert -1 <= calibration["variance_ncc"] <= 1
  samples = figures["samples"]
  for s in (1, 4):
    assert samples[f"ged_{s}"].shape == (4,) and np.all(samples[f"ged_{s}"] >= 0)
  assert np.all((0 <= samples["hungarian_iou"]) & (samples["hungarian_iou"] <= 1))
  likelihoods = figures["likelihoods"]
  assert np.all(likelihoods["nll"] > 0) and np.all(likelihoods["ce_per_pixel"] > 0)


def test_label_test_loss_is_in_the_references_unit(tmp_path):
  config = label_config.get_config()
  config.update(reference_test_batch_size=20, eval_batch_size=50,
                importance_samples=10, importance_chunk_size=5, sample_columns=2)
  model = mnist_label.make_model(config)
  rng = np.random.default_rng(0)
  test = {"target": (rng.random((100, 784)) > 0.5).astype(np.float32),
          "condition": rng.integers(0, 10, 100).astype(np.int32)}
  params = model.init(jax.random.PRNGKey(0), test["target"][:1], test["condition"][:1])
  figures = _evaluate(mnist_label.TASK, ml_collections.ConfigDict(config), model,
                      params, test, tmp_path)
  assert list(figures) == ["test_loss", "importance_sampled", "pictures"]
  loss = figures["test_loss"]
  # 100 images = 5 full batches of 20: the mean batch sum is 20 x the mean.
  np.testing.assert_allclose(loss["test_loss_reference_unit"],
                             20 * loss["negative_elbo"], rtol=1e-5)
  assert np.all(np.isfinite(figures["importance_sampled"]["importance_sampled"]))
  for picture in ("samples.png", "reconstructions.png"):
    assert (tmp_path / picture).stat().st_size > 0
