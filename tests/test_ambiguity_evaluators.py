"""cvae_jax.evaluators.ambiguity on its own: arrays from the offline set's
generator and predictors written here (not models of the library), so each
evaluator is checked against what must hold: a predictor that samples the
true grader distribution scores the true distribution's own figures, exactly
where they are exact (its NLL, its floor) and within sampling noise where
they are sampled (GED, mode frequencies); a deterministic one has no
diversity and matches no mode it does not predict."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvae_jax.data import mnist_ambiguous
from cvae_jax.distributions import Bernoulli
from cvae_jax.evaluators import ambiguity

SIZE, COUNT = 32, 12


@pytest.fixture(scope="module")
def arrays():
  rng = np.random.default_rng(0)
  digits = rng.random((2, COUNT, 28, 28)).astype(np.float32) ** 4
  return mnist_ambiguous.draw_ambiguous_set(digits[0], digits[1],
                                            mnist_ambiguous.AmbiguitySpec(), rng)


@pytest.fixture(scope="module")
def image_dependent_arrays():
  """The set whose graders' distribution follows the digits' classes."""
  rng = np.random.default_rng(0)
  digits = rng.random((2, COUNT, 28, 28)).astype(np.float32) ** 4
  labels = np.arange(2 * COUNT).reshape(2, COUNT) % 10  # Every class.
  return mnist_ambiguous.draw_ambiguous_set(
      digits[0], digits[1],
      mnist_ambiguous.AmbiguitySpec(ambiguity="image_dependent"), rng, *labels)


@dataclasses.dataclass(frozen=True)
class TrueSampler:
  """Samples each image's candidates with their probabilities; the condition
  carries them: [B, H, W, 1 + K] (the image, then the K candidate masks)."""
  probabilities: np.ndarray  # [K], the same for every image.
  log_likelihood_label: str = "exact (the truth)"

  def samples(self, params, condition, rng, num_samples):
    del params
    choice = jax.random.categorical(rng, jnp.log(self.probabilities),
                                    shape=(num_samples, len(condition)))
    candidates = jnp.moveaxis(condition[..., 1:], -1, 0)  # [K, B, H, W]
    masks = candidates[choice, jnp.arange(len(condition))[None]]  # [S, B, H, W]
    return Bernoulli(20.0 * (masks.reshape(*masks.shape[:2], -1) - 0.5))

  def point(self, params, condition):
    most = int(np.argmax(self.probabilities))
    return Bernoulli(20.0 * (condition[..., 1 + most].reshape(len(condition), -1) - 0.5))

  def log_likelihood(self, params, batch, rng, num_samples):
    del params, rng, num_samples
    candidates = jnp.moveaxis(batch["condition"][..., 1:], -1, 1)  # [B, K, H, W]
    target = batch["target"].reshape(candidates.shape[:1] + candidates.shape[2:])
    same = jnp.all(candidates == target[:, None], axis=(-2, -1))
    return jnp.log(jnp.sum(same * self.probabilities, -1))


def _with_candidates(arrays):
  image = np.concatenate([arrays["image"],
                          np.moveaxis(arrays["candidates"], 1, -1).astype(np.float32)], -1)
  return {**arrays, "image": image}


def test_a_sampler_of_the_truth_scores_the_truths_figures(arrays, tmp_path):
  test = _with_candidates(arrays)
  truth = TrueSampler(arrays["probabilities"][0])
  rng = jax.random.PRNGKey(0)
  samples = ambiguity.make_samples(truth, SIZE, 4, num_samples=64,
                                   ged_samples=(1, 64), hungarian_samples=4)
  figures = samples.run(None, test, rng, None)
  # The floor is exact; the model's GED and the truth's sampled GED are two
  # draws of the same estimator.
  np.testing.assert_allclose(np.mean(figures["ged_64"]),
                             np.mean(figures["floor_ged_64"]), atol=0.05)
  np.testing.assert_allclose(np.mean(figures["ged_64"]),
                             np.mean(figures["ideal_ged_64"]), atol=0.05)
  assert np.mean(figures["ged_1"]) > np.mean(figures["ged_64"])

  likelihoods = ambiguity.make_likelihoods(truth, SIZE, 4, num_samples=8)
  figures = likelihoods.run(None, test, rng, None)
  np.testing.assert_allclose(figures["nll"], figures["ideal_nll"], rtol=1e-6)
  assert likelihoods.estimators == {"nll": "exact (the truth), S=8"}

  modes = ambiguity.make_modes(truth, SIZE, 4, num_samples=400,
                               candidate_names=mnist_ambiguous.CANDIDATE_NAMES,
                               title="truth")
  figures = modes.run(None, test, rng, tmp_path)
  assert np.all(figures["unmatched"] == 0.0)
  assert abs(figures["mode_tv_pooled"] - figures["ideal_mode_tv_pooled"]) < 0.03
  assert figures["mode_tv_pooled"] < 0.06
  assert (tmp_path / "modes.png").stat().st_size > 0


@dataclasses.dataclass(frozen=True)
class AlwaysNothing:
  """A deterministic predictor of the empty mask."""
  log_likelihood_label = None

  def point(self, params, condition):
    return Bernoulli(jnp.full((len(condition), SIZE * SIZE), -10.0))

  def samples(self, params, condition, rng, num_samples):
    return Bernoulli(jnp.full((num_samples, len(condition), SIZE * SIZE), -10.0))


def test_a_deterministic_predictor_has_no_diversity_and_one_mode(arrays):
  predictor = AlwaysNothing()
  rng = jax.random.PRNGKey(1)
  figures = ambiguity.make_samples(predictor, SIZE, 4, num_samples=8,
                                   ged_samples=(1, 8), hungarian_samples=4).run(
                                       None, arrays, rng, None)
  assert np.all(figures["samples_diversity"] == 0)
  np.testing.assert_allclose(figures["ged_1"], figures["ged_8"], rtol=1e-6)
  figures = ambiguity.make_modes(predictor, SIZE, 4, num_samples=8).run(
      None, arrays, rng, None)
  nothing = arrays["probabilities"][0][-1]
  # Every sample is "nothing": the pooled TV is the mass the truth puts elsewhere.
  np.testing.assert_allclose(figures["mode_tv_pooled"], 1 - nothing, atol=1e-6)
  assert figures["mode_frequency_candidate_6"] == 1.0
  likelihoods = ambiguity.make_likelihoods(predictor, SIZE, 4)
  figures = likelihoods.run(None, arrays, rng, None)
  assert "nll" not in figures and likelihoods.estimators == {}
  assert np.all(figures["ce_per_pixel"] >= 0)


def test_calibration_and_lidc_like_data_without_candidates(arrays):
  graders_only = {k: arrays[k] for k in ("image", "masks")}
  predictor = AlwaysNothing()
  rng = jax.random.PRNGKey(2)
  figures = ambiguity.make_calibration(predictor, SIZE, 4, num_samples=4).run(
      None, graders_only, rng, None)
  assert "ideal_ece" not in figures
  assert figures["variance_ncc_defined"] == 0.0  # No spread to correlate.
  empty = np.asarray(arrays["masks"]).reshape(COUNT, 4, -1).max(-1) == 0
  np.testing.assert_allclose(  # Dice of the empty mask: 1 on empty masks only.
      np.mean(figures["dice"]), np.mean(empty), atol=1e-6)
  assert ambiguity.make_modes(predictor, SIZE, 4).run(
      None, graders_only, rng, None) == {}


def test_the_marginal_is_the_truth_where_the_distribution_is_constant(arrays):
  """On the constant set the best distribution that ignores x is the truth:
  its exact figures equal the truth's (any predictor; its own are unused)."""
  predictor, rng = AlwaysNothing(), jax.random.PRNGKey(3)
  np.testing.assert_allclose(ambiguity.marginal_probabilities(arrays["probabilities"]),
                             arrays["probabilities"][0], rtol=1e-6)
  figures = ambiguity.make_samples(predictor, SIZE, 4, num_samples=4,
                                   ged_samples=(1, 4), hungarian_samples=4).run(
                                       None, arrays, rng, None)
  for name in ("floor_ged_1", "floor_ged_4", "floor_ged_unbiased"):
    np.testing.assert_allclose(figures[f"marginal_{name}"], figures[name], rtol=1e-5)
  assert "ged_unbiased_1" not in figures and "ged_unbiased_4" in figures
  figures = ambiguity.make_likelihoods(predictor, SIZE, 4).run(None, arrays, rng, None)
  np.testing.assert_allclose(figures["marginal_nll"], figures["ideal_nll"], rtol=1e-5)
  figures = ambiguity.make_modes(predictor, SIZE, 4, num_samples=4).run(
      None, arrays, rng, None)
  np.testing.assert_allclose(figures["marginal_mode_tv"], 0.0, atol=1e-6)


def test_a_sampler_of_the_marginal_scores_the_marginals_figures(
    image_dependent_arrays):
  """Where the truth follows the image, a sampler that ignores it (the
  marginal, drawn for every image) scores the marginal's exact figures, all
  worse than the truth's; the truth's own unbiased GED is ~0 whatever S."""
  arrays = image_dependent_arrays
  marginal = ambiguity.marginal_probabilities(arrays["probabilities"])
  np.testing.assert_allclose(marginal, arrays["probabilities"].mean(0), rtol=1e-6)
  sampler, rng = TrueSampler(marginal), jax.random.PRNGKey(4)
  test = _with_candidates(arrays)
  figures = ambiguity.make_samples(sampler, SIZE, 4, num_samples=64,
                                   ged_samples=(4, 64), hungarian_samples=4).run(
                                       None, test, rng, None)
  for name in ("ged_4", "ged_64", "ged_unbiased_4", "ged_unbiased_64"):
    floor = "floor_ged_unbiased" if "unbiased" in name else f"floor_{name}"
    np.testing.assert_allclose(np.mean(figures[name]),
                               np.mean(figures[f"marginal_{floor}"]), atol=0.05)
    np.testing.assert_allclose(np.mean(figures[f"ideal_{name}"]),
                               np.mean(figures[floor]), atol=0.05)
    assert np.mean(figures[f"marginal_{floor}"]) > np.mean(figures[floor]) + 0.05
  figures = ambiguity.make_likelihoods(sampler, SIZE, 4, num_samples=8).run(
      None, test, rng, None)
  np.testing.assert_allclose(figures["nll"], figures["marginal_nll"], rtol=1e-5)
  assert np.mean(figures["marginal_nll"]) > np.mean(figures["ideal_nll"]) + 0.1
  figures = ambiguity.make_modes(sampler, SIZE, 4, num_samples=8).run(
      None, test, rng, None)
  assert np.all(figures["marginal_mode_tv"] > 0) and np.mean(figures["marginal_mode_tv"]) > 0.2
  # Pooled over images the marginal is the truth's mean: the pooled TV is
  # blind to whether a model reads the image.
  assert figures["marginal_mode_tv_pooled"] < 0.01
