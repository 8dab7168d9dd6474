"""The Probabilistic U-Net and its evaluation: GED by hand and against its
known floor, Hungarian IoU, model shapes and information flow, the
ambiguous MNIST set's known distribution, config errors, devices, and tiny
end-to-end runs (offline set, LIDC file)."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvae_jax import distributions, metrics, objectives, runner
from cvae_jax.data import mnist_ambiguous, splits
from cvae_jax.errors import UserError
from cvae_jax.models import prob_unet as models
from cvae_jax.tasks import prob_unet
from cvae_jax.training import InMemoryData, trainer
from helpers import (assert_one_and_four_devices_train_alike, prob_unet_arrays,
                     tiny_prob_unet_config, write_lidc_file)
from train.configs import prob_unet as prob_unet_config


def _masks(*rows):
  """Masks from strings: each row of '0'/'1' characters, rows joined by '/'."""
  return np.array([[[c == "1" for c in r] for r in m.split("/")] for m in rows])


class GeneralizedEnergyDistanceTest(chex.TestCase):

  def test_by_hand(self):
    # Samples {A, B}, graders {A, empty}: d(A, B) = 1 - 1/3, d(A, empty) = 1.
    a, b, empty = _masks("11/00", "01/01", "00/00")
    terms = metrics.generalized_energy_distance(np.stack([a, b]), np.stack([a, empty]))
    d_ab = 1 - 1 / 3
    cross = (0 + 1 + d_ab + 1) / 4
    samples_div = (0 + d_ab + d_ab + 0) / 4
    graders_div = (0 + 1 + 1 + 0) / 4
    np.testing.assert_allclose(terms.cross, cross, rtol=1e-6)
    np.testing.assert_allclose(terms.samples_diversity, samples_div, rtol=1e-6)
    np.testing.assert_allclose(terms.graders_diversity, graders_div, rtol=1e-6)
    np.testing.assert_allclose(terms.ged, 2 * cross - samples_div - graders_div,
                               rtol=1e-6)

  def test_empty_masks(self):
    empty, full = _masks("00/00", "11/11")
    # Two empty masks are at distance 0 (no 0/0); empty vs anything else: 1.
    np.testing.assert_allclose(metrics.pairwise_distances(
        np.stack([empty, full]), np.stack([empty, full])), [[0, 1], [1, 0]])
    terms = metrics.generalized_energy_distance(empty[None], empty[None, None][0])
    np.testing.assert_allclose(terms.ged, 0.0)
    assert np.all(np.isfinite(terms))

  def test_terms_are_symmetric(self):
    rng = np.random.default_rng(0)
    s, y = rng.random((3, 5, 6, 6)) > 0.5, rng.random((3, 4, 6, 6)) > 0.5
    forward = metrics.generalized_energy_distance(s, y)
    backward = metrics.generalized_energy_distance(y, s)
    np.testing.assert_allclose(forward.ged, backward.ged, rtol=1e-6)
    np.testing.assert_allclose(forward.cross, backward.cross, rtol=1e-6)
    np.testing.assert_allclose(forward.samples_diversity,
                               backward.graders_diversity, rtol=1e-6)
    d = metrics.pairwise_distances(s, y)
    np.testing.assert_allclose(d, np.swapaxes(metrics.pairwise_distances(y, s), -1, -2),
                               rtol=1e-6)

  def test_samples_from_the_true_distribution_reach_the_floor(self):
    """GED of samples drawn from a known distribution, averaged over many
    draws, equals `expected_ged_of_distribution` (the ideal floor) for each S;
    the floor falls with S and a sampler of another distribution is above."""
    rng = np.random.default_rng(1)
    candidates = rng.random((5, 8, 8)) > 0.6
    candidates[4] = False  # One empty candidate.
    pi = np.array([0.4, 0.3, 0.1, 0.1, 0.1])
    graders = candidates[rng.choice(5, 4, p=pi)]
    floors = []
    for s in (1, 4, 16):
      draws = candidates[rng.choice(5, (20_000, s), p=pi)]
      sampled = np.mean(jax.jit(metrics.generalized_energy_distance)(
          draws, np.broadcast_to(graders, (20_000, *graders.shape))).ged)
      floor = metrics.expected_ged_of_distribution(candidates, pi, graders, s).ged
      np.testing.assert_allclose(sampled, floor, atol=4e-3)
      floors.append(float(floor))
    assert floors[0] > floors[1] > floors[2]
    wrong = candidates[rng.choice(5, (20_000, 16), p=pi[::-1])]
    assert np.mean(metrics.generalized_energy_distance(
        wrong, np.broadcast_to(graders, (20_000, *graders.shape))).ged) > floors[2] + 0.01


class HungarianTest(chex.TestCase):

  def test_a_permutation_of_the_graders_matches_perfectly(self):
    rng = np.random.default_rng(2)
    graders = rng.random((2, 4, 6, 6)) > 0.5
    samples = graders[:, [2, 0, 3, 1]]
    np.testing.assert_allclose(metrics.hungarian_matched_iou(samples, graders), 1.0)
    # Eight samples = each grader twice: repeated graders match too.
    np.testing.assert_allclose(metrics.hungarian_matched_iou(
        np.concatenate([samples, graders], axis=1), graders), 1.0)

  def test_matching_is_one_to_one(self):
    a, b = _masks("11/00", "00/11")
    # Two copies of a against {a, b}: one of them must take b (IoU 0).
    np.testing.assert_allclose(
        metrics.hungarian_matched_iou(np.stack([a, a]), np.stack([a, b])), 0.5)
    # Three samples, two graders (not a multiple): each repeated to
    # lcm = 6, so every sample is judged. An empty third sample costs its
    # two of the six pairs (IoU 0 against a and b): 4/6, not the 1.0 that
    # matching only min(S, G) pairs would give.
    empty = np.zeros_like(a)
    np.testing.assert_allclose(
        metrics.hungarian_matched_iou(np.stack([a, b, empty]), np.stack([a, b])), 4 / 6)
    # b, a, a against a, b: 2 b-b and 3 a-a pairs, one a-b (IoU 0): 5/6.
    np.testing.assert_allclose(
        metrics.hungarian_matched_iou(np.stack([b, a, a]), np.stack([a, b])), 5 / 6)

  def test_masks_that_are_not_binary_are_read_or_refused(self):
    a, b = _masks("11/00", "01/01")
    # A uint8 {0, 255} mask reads as its 0/1 version (nonzero = foreground).
    for fn in (metrics.pairwise_distances, metrics.generalized_energy_distance):
      chex.assert_trees_all_close(
          fn((np.stack([a, b]) * 255).astype(np.uint8), np.stack([a, b])[None][0]),
          fn(np.stack([a, b]), np.stack([a, b])))
    # Soft masks are refused in one line.
    with pytest.raises(ValueError, match="strictly between 0 and 1.*threshold"):
      metrics.generalized_energy_distance(np.stack([a, b]) * 0.7, np.stack([a, b]))


def _model_and_params(channels=(4, 8), size=8, batch=3):
  model = models.ProbabilisticUNet(channels, latent_size=3, convs_per_block=1,
                                   fcomb_convs=2)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((batch, size, size, 1)), jnp.float32)
  y = jnp.asarray(rng.random((batch, size * size)) > 0.5, jnp.float32)
  params = model.init(jax.random.PRNGKey(0), y, x)
  # Zero-initialised heads give q = p = N(0, I); move them so the tests see
  # real Gaussians.
  params = jax.tree_util.tree_map_with_path(
      lambda path, v: v + 0.3 * jax.random.normal(
          jax.random.PRNGKey(len(str(path))), v.shape) if "head" in str(path) else v,
      params)
  return model, params, {"condition": x, "target": y}


class ProbabilisticUNetTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_z_broadcast_and_fcomb_shapes(self):
    model, params, batch = _model_and_params()
    z = jnp.ones((5, 3, 3))  # [S, batch, latent]
    logits = self.variant(lambda p, z, x: model.apply(
        p, z, x, method="generation").logits)(params, z, batch["condition"])
    chex.assert_shape(logits, (5, 3, 64))
    features = model.apply(params, batch["condition"],
                           method=lambda m, x: m.unet(x))
    chex.assert_shape(features, (3, 8, 8, 4))
    prior = model.apply(params, batch["condition"], method="prior")
    chex.assert_shape([prior.mean, prior.log_variance], [(3, 3)] * 2)
    # z is constant over the image: a z that differs changes every pixel's
    # logit through fcomb, a z shared gives the same logits.
    np.testing.assert_allclose(logits[0], logits[1])
    other = model.apply(params, z.at[1].set(-1.0), batch["condition"],
                        method="generation").logits
    assert np.all(np.abs(other[1] - logits[1]).max(-1) > 0)
    deterministic = models.DeterministicUNet((4, 8), 1)
    out = deterministic.apply(deterministic.init(jax.random.PRNGKey(0),
                                                 batch["condition"]),
                              batch["condition"])
    chex.assert_shape(out.logits, (3, 64))

  def test_posterior_sees_y_and_the_prior_does_not(self):
    model, params, batch = _model_and_params()
    flipped = 1.0 - batch["target"]
    q = [model.apply(params, y, batch["condition"], method="recognition")
         for y in (batch["target"], flipped)]
    assert np.abs(q[0].mean - q[1].mean).max() > 1e-4
    grad = jax.grad(lambda y: jnp.sum(model.apply(
        params, y, batch["condition"], method="recognition").mean))(batch["target"])
    assert np.abs(grad).max() > 0
    # The prior's signature has no y; and its gradient wrt x is non-zero.
    prior_grad = jax.grad(lambda x: jnp.sum(model.apply(
        params, x, method="prior").mean))(batch["condition"])
    assert np.abs(prior_grad).max() > 0

  def test_kl_analytic_matches_monte_carlo_on_the_model(self):
    model, params, batch = _model_and_params()
    q = model.apply(params, batch["target"], batch["condition"], method="recognition")
    p = model.apply(params, batch["condition"], method="prior")
    z = distributions.sample_gaussian(jax.random.PRNGKey(3), q, 200_000)
    monte_carlo = jnp.mean(distributions.gaussian_log_density(z, q)
                           - distributions.gaussian_log_density(z, p), axis=0)
    analytic = distributions.kl_diagonal_gaussians(q, p)
    assert float(analytic.min()) > 0.01
    np.testing.assert_allclose(monte_carlo, analytic, rtol=0.03, atol=3e-3)

  def test_variances_stay_finite_for_extreme_heads(self):
    model, params, batch = _model_and_params()
    huge = jax.tree_util.tree_map_with_path(
        lambda path, v: v * 1e4 if "head" in str(path) else v, params)
    terms = objectives.negative_elbo(model, huge, batch, jax.random.PRNGKey(0))
    assert np.all(np.isfinite(terms.loss))
    prior = model.apply(huge, batch["condition"], method="prior")
    assert np.abs(prior.log_variance).max() <= 10.0


class AmbiguousSetTest(chex.TestCase):

  def _digits(self, n=60, seed=0):
    rng = np.random.default_rng(seed)
    digits = np.zeros((n, 28, 28), np.float32)
    for i in range(n):  # A blob somewhere in the middle of the 28 x 28 frame.
      top, left = rng.integers(4, 12, 2)
      digits[i, top:top + 12, left:left + rng.integers(6, 13)] = rng.uniform(0.3, 1.0)
      digits[i, top + 2:top + 10, left + 2:left + 5] = 1.0
    return digits

  def test_the_image_determines_every_candidate(self):
    spec = mnist_ambiguous.AmbiguitySpec()
    digits = self._digits()
    arrays = mnist_ambiguous.draw_ambiguous_set(
        digits[:30], digits[30:], spec, np.random.default_rng(0))
    image, candidates = arrays["image"][..., 0], arrays["candidates"]
    chex.assert_shape(candidates, (30, 7, 32, 32))
    left_loose, right_loose = candidates[:, 1], candidates[:, 3]
    # Strokes never touch: no column holds ink of both digits, and "both"
    # is their union, read off the image by the same thresholds.
    assert not np.any(left_loose.any(1) & right_loose.any(1))
    np.testing.assert_array_equal(candidates[:, 5], image > mnist_ambiguous.LOOSE)
    np.testing.assert_array_equal(candidates[:, 4], image > mnist_ambiguous.TIGHT)
    np.testing.assert_array_equal(candidates[:, 0] | candidates[:, 2], candidates[:, 4])
    assert not candidates[:, 6].any()  # "nothing"
    # Tight traces lie inside loose ones.
    assert not np.any(candidates[:, 0] & ~candidates[:, 1])

  def test_graders_follow_the_known_distribution(self):
    spec = mnist_ambiguous.AmbiguitySpec(num_graders=4)
    digits = self._digits(400)
    arrays = mnist_ambiguous.draw_ambiguous_set(
        digits[:200], digits[200:], spec, np.random.default_rng(0))
    np.testing.assert_allclose(arrays["probabilities"].sum(-1), 1.0, rtol=1e-6)
    # Each grader's mask is one of its image's candidates; count which.
    masks, candidates = arrays["masks"] > 0, arrays["candidates"]
    same = np.all(masks[:, :, None] == candidates[:, None], axis=(-2, -1))
    assert np.all(same.any(-1))
    # Where candidates coincide the choice is ambiguous; count structures by
    # the first match and compare the frequency of "nothing" and of the
    # union to their probabilities (800 draws: 4 standard errors).
    nothing = np.mean(~masks.any(axis=(-2, -1)))
    assert abs(nothing - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 800), nothing

  def test_deterministic_under_a_seed(self):
    spec = mnist_ambiguous.AmbiguitySpec()
    digits = self._digits()
    draws = [mnist_ambiguous.draw_ambiguous_set(digits[:30], digits[30:], spec,
                                                np.random.default_rng(s))
             for s in (0, 0, 1)]
    chex.assert_trees_all_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0]["masks"], draws[2]["masks"])


@pytest.mark.parametrize("overrides, expected", [
    ({"model": "bogus"}, "model must be one of unet, prob_unet, sohn_cvae"),
    ({"dataset": "cityscapes"}, "dataset must be one of mnist_ambiguous, lidc"),
    ({"image_size": 36}, "image_size=36 cannot be halved 3 times"),
    ({"image_size": 24}, "cannot hold two 14-px digits"),
    ({"data.structure_probabilities": (0.5, 0.5, 0.5, 0.0)},
     "data.structure_probabilities must be 4 non-negative numbers"),
    ({"dataset": "lidc"}, "--config.data.lidc_path=/path/to/data_lidc.pickle"),
    ({"eval.ged_samples": (1, 500)}, "eval.ged_samples"),
    ({"batch_size": 6}, "does not divide by the 4 local devices"),
    ({"beta": -1.0}, "beta must be in [0, inf]"),
])
def test_impossible_settings_are_one_line_errors(tmp_path, overrides, expected):
  config = prob_unet_config.get_config()
  for key, value in overrides.items():
    *groups, name = key.split(".")
    target = config
    for group in groups:
      target = target[group]
    target[name] = value
  with pytest.raises(UserError) as error:
    runner.check(prob_unet.TASK, config, tmp_path / "w")
  assert expected in str(error.value)
  assert "\n" not in str(error.value)


def test_lidc_images_of_another_size_are_a_one_line_error(tmp_path):
  path = write_lidc_file(tmp_path / "lidc.pickle")
  config = tiny_prob_unet_config(dataset="lidc", image_size=32)
  config.data.lidc_path = str(path)
  with pytest.raises(UserError, match="set --config.image_size=16") as error:
    splits.ambiguous_splits(config)
  assert "\n" not in str(error.value)


def test_one_and_four_devices_train_to_the_same_parameters(tmp_path):
  config = tiny_prob_unet_config(image_size=16)
  config.early_stopping_metric = ""
  model = prob_unet.make_model(config)
  example = prob_unet.objective_batch(jnp.zeros((1, 16, 16, 1)), jnp.zeros((1, 16, 16)))
  init_fn = lambda rng: model.init(rng, example["target"], example["condition"])
  data = InMemoryData(prob_unet_arrays(32))
  assert_one_and_four_devices_train_alike(
      config, tmp_path, init_fn, prob_unet.TASK.loss_fn(config, model), data)


# The Prob U-Net runs end to end in the LIDC test below (CI time).
@pytest.mark.parametrize("model_kind", ["unet", "sohn_cvae"])
def test_end_to_end_on_tiny_mnist(tmp_path, tiny_mnist_dir, model_kind):
  config = tiny_prob_unet_config(model=model_kind, data_dir=str(tiny_mnist_dir),
                                 download=False, validation_size=100)
  config.data.update(max_train_examples=32, max_eval_examples=8)
  results = prob_unet.train_and_evaluate(config, tmp_path / model_kind)
  saved = json.loads((tmp_path / model_kind / "results.json").read_text())
  assert saved["test"] == results["test"]
  figures = results["test"]
  assert all(np.isfinite(v) for v in figures.values())
  assert {"ged_1", "ged_8", "floor_ged_8", "ideal_ged_8", "hungarian_iou", "ideal_nll",
          "ideal_hungarian_iou", "samples_diversity", "ce_per_pixel",
          "nll"} <= set(figures)
  # The floor is the expected ideal; both are far below an untrained model.
  assert figures["floor_ged_8"] < figures["ged_8"]
  assert abs(figures["ideal_ged_8"] - figures["floor_ged_8"]) < 0.15
  # Every grader's mask is a candidate: its exact -log p(y|x) is at most
  # -log of the least likely candidate's probability (0.1 by default).
  assert 0 <= figures["ideal_nll"] <= -np.log(0.1) + 1e-6
  if model_kind == "unet":  # One prediction: no diversity, GED flat in S.
    assert figures["samples_diversity"] == 0.0
    np.testing.assert_allclose(figures["ged_1"], figures["ged_8"], rtol=1e-6)
  assert (tmp_path / model_kind / "panel.png").stat().st_size > 0


def test_lidc_config_trains_on_a_generated_file(tmp_path):
  """The LIDC config (Kohl et al.'s net, narrowed for CI) end to end on a
  generated pickle of the real file's structure, split by patient."""
  from train.configs import prob_unet_lidc  # pylint: disable=g-import-not-at-top
  path = write_lidc_file(tmp_path / "lidc.pickle")
  config = prob_unet_lidc.get_config()
  config.update(image_size=16, batch_size=4, num_epochs=1,
                checkpoint_every_steps=2, log_every_steps=1)
  config.network.channels = (8, 16)
  config.data.lidc_path = str(path)
  config.eval.update(batch_size=4, num_samples=4, chunk_size=4,
                     ged_samples=(1, 4), hungarian_samples=4, figure_images=2,
                     figure_samples=2)
  results = prob_unet.train_and_evaluate(config, tmp_path / "lidc")
  assert results["dataset"] == "lidc" and results["steps"] >= 1
  # The patient split is in the workdir (from before training) and results.
  written = json.loads((tmp_path / "lidc" / "split.json").read_text())
  assert written == {"lidc_split": results["lidc_split"]}
  assert "floor_ged_4" not in results["test"]  # Unknown grader distribution.
  assert all(np.isfinite(v) for v in results["test"].values())


def test_bfloat16_loss_is_close_to_float32():
  """Mixed precision on the conv model: the Kohl loss of the same batch and
  z noise with bfloat16 activations is finite and within 1% of float32's."""
  config = tiny_prob_unet_config(image_size=16)
  model = prob_unet.make_model(config)
  arrays = {k: jnp.asarray(v) for k, v in prob_unet_arrays(8).items()}
  example = prob_unet.objective_batch(arrays["image"][:1], arrays["masks"][:1, 0])
  params = model.init(jax.random.PRNGKey(0), example["target"], example["condition"])
  loss_fn = prob_unet.TASK.loss_fn(config, model)
  losses = [float(trainer.mixed_precision(loss_fn, dtype)(
      params, arrays, jax.random.PRNGKey(1))[0]) for dtype in (jnp.float32, jnp.bfloat16)]
  assert np.isfinite(losses[1]) and losses[0] != losses[1]
  np.testing.assert_allclose(losses[1], losses[0], rtol=0.01)


class LiteratureMetricsTest(chex.TestCase):
  """Dice, the ECE of the pixel-wise marginal and PHiSeg's S_NCC on hand-made
  sets whose answers are worked out in the comments."""

  def setUp(self):
    super().setUp()
    self.top = np.zeros((4, 4), bool)
    self.top[:2] = True  # The top half.
    self.left = np.zeros((4, 4), bool)
    self.left[:, :2] = True  # The left half; 4 pixels shared with `top`.

  def test_dice(self):
    empty = np.zeros((4, 4), bool)
    np.testing.assert_allclose(
        metrics.dice(np.stack([self.top, self.top, empty, empty]),
                     np.stack([self.left, self.top, empty, self.top])),
        [2 * 4 / 16, 1.0, 1.0, 0.0])

  def test_calibration_error(self):
    graders = np.stack([self.top, self.left])
    # Samples in the graders' proportions: p equals the graders' share.
    calibrated = np.stack([self.top, self.top, self.left, self.left])
    np.testing.assert_allclose(
        metrics.expected_calibration_error(calibrated, graders), 0.0, atol=1e-7)
    # Always `top`: the bin p = 1 holds the top half, where the graders'
    # share is 1 or 0.5 (gap 4 x 0.5), the bin p = 0 the bottom half (0.5 or
    # 0, gap 4 x 0.5): (2 + 2) / 16.
    overconfident = np.stack([self.top, self.top])
    np.testing.assert_allclose(
        metrics.expected_calibration_error(overconfident, graders), 0.25, rtol=1e-6)

  def test_variance_ncc(self):
    graders = np.stack([self.top, self.left])
    # Uncertain exactly where the graders disagree: S_NCC = 1.
    matching = np.stack([self.top, self.top, self.left, self.left])
    np.testing.assert_allclose(metrics.variance_ncc(matching, graders), 1.0, rtol=1e-5)
    # Uncertain where the graders agree (the top-left corner) as much as
    # where they do not: the two maps are uncorrelated.
    corners = np.zeros((4, 4), bool)
    corners[:2, :2] = True
    elsewhere = np.stack([corners, ~corners & ~self.top & ~self.left,
                          corners | (~self.top & ~self.left), np.zeros((4, 4), bool)])
    assert abs(float(metrics.variance_ncc(elsewhere, graders))) < 1e-3
    # The same under jit (XLA must not turn log(1 - s + eps) into log 0),
    # and on random masks.
    rng = np.random.default_rng(0)
    samples, masks = rng.random((2, 16, 8, 8)) > 0.5, rng.random((2, 4, 8, 8)) > 0.5
    eager = metrics.variance_ncc(samples, masks)
    chex.assert_trees_all_close(jax.jit(metrics.variance_ncc)(samples, masks), eager,
                                rtol=1e-5)
    assert np.all(np.isfinite(eager))
    # Identical samples: no uncertainty map to correlate.
    assert np.isnan(metrics.variance_ncc(np.stack([self.top, self.top]), graders))


class ModeCalibrationTest(chex.TestCase):
  """Kohl et al.'s mode calibration: each sample assigned to its nearest
  candidate by IoU (or to none), frequencies against the truth."""

  def setUp(self):
    super().setUp()
    self.top, self.left, self.empty = _masks("1111/1111/0000/0000",
                                             "1100/1100/1100/1100",
                                             "0000/0000/0000/0000")
    self.candidates = np.stack([self.top, self.left, self.empty])  # K = 3

  def test_assignment_of_constructed_samples(self):
    shifted = np.roll(self.top, 1, axis=0)  # IoU 4/12 with top: no match.
    near = self.top.copy()
    near[2, 0] = True  # One extra pixel: IoU 8/9 with top.
    samples = np.stack([self.top, self.left, self.empty, shifted, near])
    np.testing.assert_array_equal(
        metrics.assign_to_candidates(samples, self.candidates), [0, 1, 2, 3, 0])
    # The threshold decides the near miss; the layout is [..., S, H, W].
    batched = np.stack([samples, samples])
    chex.assert_shape(metrics.assign_to_candidates(batched, np.stack(
        [self.candidates] * 2)), (2, 5))
    np.testing.assert_array_equal(
        metrics.assign_to_candidates(samples, self.candidates, threshold=0.9),
        [0, 1, 2, 3, 3])
    np.testing.assert_allclose(metrics.mode_frequencies(samples, self.candidates),
                               [2 / 5, 1 / 5, 1 / 5, 1 / 5])
    # uint8 {0, 255} samples read as masks.
    np.testing.assert_array_equal(metrics.assign_to_candidates(
        (samples * 255).astype(np.uint8), self.candidates), [0, 1, 2, 3, 0])

  def test_identical_candidates_pool_their_true_mass(self):
    candidates = np.stack([self.top, self.top, self.left])  # tight = loose
    truth = metrics.true_mode_frequencies(candidates, np.array([0.2, 0.3, 0.5]))
    np.testing.assert_allclose(truth, [0.5, 0.0, 0.5, 0.0], atol=1e-7)
    samples = np.stack([self.top] * 5 + [self.left] * 5)
    np.testing.assert_allclose(metrics.total_variation(
        metrics.mode_frequencies(samples, candidates), truth), 0.0, atol=1e-7)

  def test_samples_of_the_true_distribution_approach_it(self):
    """TV between sampled and true frequencies -> 0 as S grows (~ 1/sqrt S);
    a sampler with the probabilities reversed stays away."""
    rng = np.random.default_rng(3)
    candidates = rng.random((6, 8, 8)) > 0.5
    candidates[5] = False
    pi = np.array([0.3, 0.25, 0.15, 0.1, 0.1, 0.1])
    truth = metrics.true_mode_frequencies(candidates, pi)
    np.testing.assert_allclose(truth, [*pi, 0.0], atol=1e-7)  # All distinct.
    tv = []
    for s in (10, 100, 10_000):
      draws = candidates[rng.choice(6, (50, s), p=pi)]  # 50 images
      frequencies = metrics.mode_frequencies(draws, np.broadcast_to(
          candidates, (50, *candidates.shape)))
      chex.assert_shape(frequencies, (50, 7))
      tv.append(float(np.mean(metrics.total_variation(frequencies, truth))))
    assert tv[0] > tv[1] > tv[2] and tv[2] < 0.01, tv
    reversed_draws = candidates[rng.choice(6, (1, 10_000), p=pi[::-1])]
    assert float(metrics.total_variation(
        metrics.mode_frequencies(reversed_draws, candidates[None]), truth)[0]) > 0.2


def test_every_sample_metric_reads_batch_then_samples():
  """Every metric of a set of masks takes [batch, S, H, W] (graders [batch,
  G, H, W]) and gives one value per image, the image's own: checked with
  batch = S = G, where reading the axes the other way round would pass any
  shape check but give other values."""
  rng = np.random.default_rng(5)
  samples, graders = rng.random((2, 3, 3, 6, 6)) > 0.6  # batch = S = G = 3
  candidates = rng.random((3, 3, 6, 6)) > 0.5
  per_set = {
      "ged": lambda s, g, c: metrics.generalized_energy_distance(s, g).ged,
      "hungarian": lambda s, g, c: metrics.hungarian_matched_iou(s, g),
      "best_of": lambda s, g, c: metrics.best_of_samples_iou(s, g[..., 0, :, :]),
      "ece": lambda s, g, c: metrics.expected_calibration_error(s, g),
      "ncc": lambda s, g, c: metrics.variance_ncc(s, g),
      "modes": lambda s, g, c: metrics.mode_frequencies(s, c, threshold=0.3),
      "floor": lambda s, g, c: metrics.expected_ged_of_distribution(
          c, np.full(c.shape[:-2], 1 / 3), g, 4).ged,
  }
  for name, fn in per_set.items():
    batched = np.asarray(fn(samples, graders, candidates))
    assert batched.shape[0] == 3, name
    one_by_one = np.stack([np.asarray(fn(samples[i], graders[i], candidates[i]))
                           for i in range(3)])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, err_msg=name)
    swapped = np.asarray(fn(np.swapaxes(samples, 0, 1), np.swapaxes(graders, 0, 1),
                            candidates))
    assert not np.allclose(swapped, batched), name  # The axes matter.
