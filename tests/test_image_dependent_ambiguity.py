"""The offline ambiguous set with ambiguity=image_dependent: each image's
grader distribution is a known function of its two digits' classes, drawn
with the constant set's draws (same images and candidates), its floor
matches the GED of draws of the truth, and a config naming another setting
is a one-line error."""

import dataclasses

import chex
import jax
import numpy as np
import pytest

from cvae_jax import metrics, runner
from cvae_jax.data import mnist, mnist_ambiguous
from cvae_jax.errors import ConfigError
from cvae_jax.tasks import prob_unet
from train.configs import prob_unet as prob_unet_config

IMAGE_DEPENDENT = mnist_ambiguous.AmbiguitySpec(ambiguity="image_dependent")


def _digits_and_labels(n=40, seed=0):
  """[n, 28, 28] blobs with a bright core, and [n] classes 0-9."""
  rng = np.random.default_rng(seed)
  digits = np.zeros((n, 28, 28), np.float32)
  for i in range(n):
    top, left = rng.integers(4, 12, 2)
    digits[i, top:top + 12, left:left + rng.integers(6, 13)] = rng.uniform(0.3, 1.0)
    digits[i, top + 2:top + 10, left + 2:left + 5] = 1.0
  return digits, rng.integers(0, 10, n)


def _draw(spec, n=20, seed=0):
  digits, labels = _digits_and_labels(2 * n)
  return mnist_ambiguous.draw_ambiguous_set(
      digits[:n], digits[n:], spec, np.random.default_rng(seed), labels[:n],
      labels[n:])


def test_the_probabilities_follow_the_classes_and_vary_over_images():
  arrays = _draw(IMAGE_DEPENDENT)
  probabilities = arrays["probabilities"]
  chex.assert_shape(probabilities, (20, 7))
  np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-6)
  assert np.all(probabilities > 0)  # Every candidate possible: a finite NLL.
  assert len(np.unique(probabilities, axis=0)) > 5
  # By hand: a 2 (marked with 0.9, loose 0.3) left of a 7 (0.5, loose 0.8).
  by_hand = [0.9 * 0.5 * 0.7, 0.9 * 0.5 * 0.3, 0.1 * 0.5 * 0.2, 0.1 * 0.5 * 0.8,
             0.9 * 0.5 * 0.45, 0.9 * 0.5 * 0.55, 0.1 * 0.5]
  np.testing.assert_allclose(mnist_ambiguous.image_dependent_probabilities(
      np.array([2]), np.array([7]))[0], by_hand, rtol=1e-6)


def test_the_constant_setting_draws_the_same_images_and_needs_no_classes():
  constant_spec = mnist_ambiguous.AmbiguitySpec()
  constant, dependent = _draw(constant_spec), _draw(IMAGE_DEPENDENT)
  for name in ("image", "candidates"):
    np.testing.assert_array_equal(constant[name], dependent[name])
  np.testing.assert_array_equal(constant["probabilities"], np.broadcast_to(
      constant_spec.candidate_probabilities(), (20, 7)))
  digits, _ = _digits_and_labels(40)
  without_classes = mnist_ambiguous.draw_ambiguous_set(
      digits[:20], digits[20:], constant_spec, np.random.default_rng(0))
  chex.assert_trees_all_equal(without_classes, constant)
  with pytest.raises(ValueError, match="left_labels and right_labels"):
    mnist_ambiguous.draw_ambiguous_set(digits[:20], digits[20:], IMAGE_DEPENDENT,
                                       np.random.default_rng(0))


def test_each_grader_mask_is_a_candidate_and_draws_are_deterministic():
  first, again, other = (_draw(IMAGE_DEPENDENT, seed=s) for s in (0, 0, 1))
  chex.assert_trees_all_equal(first, again)
  assert not np.array_equal(first["masks"], other["masks"])
  masks = first["masks"] > 0.5
  same = np.all(masks[:, :, None] == first["candidates"][:, None], axis=(-2, -1))
  assert np.all(same.any(-1))


def test_the_floor_is_the_mean_ged_of_draws_of_the_truth():
  """Per image, `expected_ged_of_distribution` (S = 4) and its unbiased
  sibling equal the mean GED of 4,000 sets of S draws of the image's own
  distribution against its graders."""
  arrays = _draw(IMAGE_DEPENDENT, n=4)
  candidates, graders = arrays["candidates"], arrays["masks"] > 0.5
  probabilities = arrays["probabilities"]
  rng = np.random.default_rng(2)
  ged = jax.jit(metrics.generalized_energy_distance, static_argnums=2)
  for i in range(len(candidates)):
    draws = candidates[i][rng.choice(7, (4_000, 4), p=probabilities[i])]
    repeated = np.broadcast_to(graders[i], (4_000, *graders[i].shape))
    for unbiased, floor in (
        (False, metrics.expected_ged_of_distribution(
            candidates[i], probabilities[i], graders[i], 4)),
        (True, metrics.expected_unbiased_ged_of_distribution(
            candidates[i], probabilities[i], graders[i]))):
      np.testing.assert_allclose(np.mean(ged(draws, repeated, unbiased).ged),
                                 floor.ged, atol=0.01)


def test_offline_mnist_splits_carry_the_classes_through(tiny_mnist_dir):
  spec = dataclasses.replace(IMAGE_DEPENDENT, size=32)
  splits = mnist_ambiguous.load_ambiguous_splits(
      tiny_mnist_dir, spec, validation_size=100, seed=0,
      max_examples={"train": 4, "validation": 4, "test": 6})
  labels = mnist.load_mnist_arrays(tiny_mnist_dir, "test")["condition"]
  half = len(labels) // 2
  np.testing.assert_array_equal(
      splits["test"]["probabilities"],
      mnist_ambiguous.image_dependent_probabilities(labels[:6], labels[half:half + 6]))


def test_an_unknown_setting_is_a_one_line_error(tmp_path):
  config = prob_unet_config.get_config()
  config.data.ambiguity = "per_pixel"
  with pytest.raises(ConfigError) as error:
    runner.check(prob_unet.TASK, config, tmp_path / "w")
  message = str(error.value)
  assert "--config.data.ambiguity" in message
  assert "constant, image_dependent" in message and "\n" not in message
