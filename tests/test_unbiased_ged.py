"""The unbiased GED (diversity over pairs i != j) beside the literature's
(i = j included): by hand, undefined for one sample, and its exact
expectation for samples of a known distribution, which is the same for
every S and zero on average when the graders are drawn from it too."""

import jax
import numpy as np

from cvae_jax import metrics


def _masks(*rows):
  """Masks from strings: each row of '0'/'1' characters, rows joined by '/'."""
  return np.array([[[c == "1" for c in r] for r in m.split("/")] for m in rows])


A, B, EMPTY = _masks("11/00", "01/01", "00/00")


def test_by_hand():
  # d(A, B) = 1 - 1/3 = 2/3 (A & B: 1 px, A | B: 3 px); the empty mask is at
  # 1 from A and B. Samples {A, B, empty}, graders {A, B}:
  #   cross = (0 + 2/3 + 2/3 + 0 + 1 + 1) / 6 = 5/9
  #   samples, 6 pairs i != j: 2 (2/3 + 1 + 1) / 6 = 8/9
  #     (literature, 9 pairs: 16/27)
  #   graders, 2 pairs i != j: 2 (2/3) / 2 = 2/3   (literature, 4 pairs: 1/3)
  #   unbiased GED = 10/9 - 8/9 - 2/3 = -4/9     (literature: 5/27)
  samples, graders = np.stack([A, B, EMPTY]), np.stack([A, B])
  unbiased = metrics.generalized_energy_distance(samples, graders, unbiased=True)
  literature = metrics.generalized_energy_distance(samples, graders)
  np.testing.assert_allclose(unbiased, (-4 / 9, 5 / 9, 8 / 9, 2 / 3), rtol=1e-6)
  np.testing.assert_allclose(literature, (5 / 27, 5 / 9, 16 / 27, 1 / 3), rtol=1e-6)


def test_one_sample_or_one_grader_has_no_pair():
  terms = metrics.generalized_energy_distance(A[None], np.stack([A, B]),
                                              unbiased=True)
  assert np.isnan(terms.samples_diversity) and np.isnan(terms.ged)
  np.testing.assert_allclose(terms.graders_diversity, 2 / 3, rtol=1e-6)
  terms = metrics.generalized_energy_distance(np.stack([A, B]), A[None],
                                              unbiased=True)
  assert np.isnan(terms.graders_diversity) and np.isnan(terms.ged)


def test_the_expectation_by_hand():
  # Candidates {A, empty} with pi = (3/4, 1/4), graders {A, empty}:
  #   E cross = 3/4 (0 + 1)/2 + 1/4 (1 + 0)/2 = 1/2
  #   E samples' diversity = pi^T D pi = 2 (3/4)(1/4) = 3/8, any S
  #     (literature, S = 4: (1 - 1/4) 3/8 = 9/32)
  #   graders' diversity = 1 over the 2 pairs i != j (literature: 1/2)
  #   unbiased floor = 1 - 3/8 - 1 = -3/8   (literature, S = 4: 7/32)
  candidates, pi = np.stack([A, EMPTY]), np.array([0.75, 0.25])
  graders = np.stack([A, EMPTY])
  np.testing.assert_allclose(
      metrics.expected_unbiased_ged_of_distribution(candidates, pi, graders),
      (-3 / 8, 1 / 2, 3 / 8, 1), rtol=1e-6)
  np.testing.assert_allclose(
      metrics.expected_ged_of_distribution(candidates, pi, graders, 4),
      (7 / 32, 1 / 2, 9 / 32, 1 / 2), rtol=1e-6)


def test_sampled_mean_is_the_expectation_for_every_s():
  """The mean unbiased GED of 20,000 sets of S draws is the exact
  expectation, the same for S = 2, 4 and 16; averaged over draws of the
  graders from the same distribution it is zero (the energy distance of a
  distribution to itself)."""
  rng = np.random.default_rng(1)
  candidates = rng.random((5, 8, 8)) > 0.6
  candidates[4] = False
  pi = np.array([0.4, 0.3, 0.1, 0.1, 0.1])
  graders = candidates[rng.choice(5, 4, p=pi)]
  expected = metrics.expected_unbiased_ged_of_distribution(candidates, pi, graders).ged
  ged = jax.jit(lambda s, g: metrics.generalized_energy_distance(s, g, unbiased=True).ged)
  for s in (2, 4, 16):
    draws = candidates[rng.choice(5, (20_000, s), p=pi)]
    sampled = np.mean(ged(draws, np.broadcast_to(graders, (20_000, 4, 8, 8))))
    np.testing.assert_allclose(sampled, expected, atol=5e-3)
  many_graders = candidates[rng.choice(5, (20_000, 4), p=pi)]
  floors = metrics.expected_unbiased_ged_of_distribution(
      np.broadcast_to(candidates, (20_000, 5, 8, 8)), np.broadcast_to(pi, (20_000, 5)),
      many_graders).ged
  np.testing.assert_allclose(np.mean(floors), 0.0, atol=5e-3)
