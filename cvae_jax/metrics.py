"""Segmentation metrics: plain jittable functions of binary masks (the
Hungarian matching alone runs on the host).

Masks are [..., H, W] arrays, True / nonzero on the foreground (so a uint8
{0, 255} mask reads as it should); a set of masks is [..., S, H, W], the set
axis third from the end, for every function. Concrete (not traced) float
masks with values strictly between 0 and 1, soft masks or probabilities, are
refused with one line: threshold them first. Every function returns one value
per leading index.

Convention for empty masks: the IoU of two empty masks is 1 (nothing to find,
nothing found: a perfect answer, and the distance 1 - IoU = 0 that the
ambiguous-segmentation literature uses); an empty prediction of a non-empty
truth, or the reverse, has IoU 0.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["as_masks", "intersection_over_union", "pixel_error", "best_of_samples_iou",
           "pairwise_distances", "EnergyDistance", "generalized_energy_distance",
           "expected_ged_of_distribution", "expected_unbiased_ged_of_distribution",
           "hungarian_matched_iou", "dice",
           "expected_calibration_error", "variance_ncc", "MODE_IOU_THRESHOLD",
           "assign_to_candidates", "mode_frequencies", "true_mode_frequencies",
           "total_variation"]


def as_masks(masks, name: str = "masks") -> jax.Array:
  """`masks` as bool (nonzero = foreground); ValueError for concrete float
  values strictly between 0 and 1 (soft masks), which no cast makes binary."""
  if not isinstance(masks, jax.core.Tracer):
    values = np.asarray(masks)
    if values.dtype.kind == "f" and np.any((values > 0) & (values < 1)):
      raise ValueError(f"{name} must be binary masks (0/1, bool or 0/255); got "
                       f"values strictly between 0 and 1 (e.g. "
                       f"{values[(values > 0) & (values < 1)].flat[0]:.3g}): "
                       "threshold soft masks first, e.g. probabilities > 0.5")
  return jnp.asarray(masks).astype(bool)


def intersection_over_union(prediction: jax.Array, truth: jax.Array) -> jax.Array:
  """Foreground IoU |P & T| / |P | T| of binary masks; [...] in [0, 1]."""
  prediction, truth = as_masks(prediction, "prediction"), as_masks(truth, "truth")
  intersection = jnp.sum(prediction & truth, axis=(-2, -1))
  union = jnp.sum(prediction | truth, axis=(-2, -1))
  return jnp.where(union == 0, 1.0, intersection / jnp.maximum(union, 1))


def pixel_error(prediction: jax.Array, truth: jax.Array) -> jax.Array:
  """Share of pixels where the binary masks differ; [...] in [0, 1]."""
  wrong = as_masks(prediction, "prediction") != as_masks(truth, "truth")
  return jnp.mean(wrong, axis=(-2, -1))


def best_of_samples_iou(samples: jax.Array, truth: jax.Array) -> jax.Array:
  """The oracle over S samples: max_s IoU(samples[..., s, :, :], truth).

  Args:
    samples: [..., S, H, W] binary masks (the layout of every set here).
    truth: [..., H, W].

  Returns:
    [...] best IoU.
  """
  return jnp.max(intersection_over_union(samples, truth[..., None, :, :]), axis=-1)


# Ambiguous segmentation: a set of S model samples judged against the masks
# of G graders (Kohl et al. 2018). Distance d(a, b) = 1 - IoU(a, b), so two
# empty masks are at distance 0 (the LIDC literature's convention; 0 / 0 is
# never evaluated).


def pairwise_distances(a: jax.Array, b: jax.Array) -> jax.Array:
  """d = 1 - IoU between every mask of two sets.

  Args:
    a: [..., S, H, W] binary masks.
    b: [..., G, H, W].

  Returns:
    [..., S, G] distances in [0, 1].
  """
  # As matrix products, not an [S, G, H, W] intermediate (S = 100: 10^4 masks).
  a, b = as_masks(a, "samples"), as_masks(b, "graders")
  a = a.reshape(*a.shape[:-2], -1).astype(jnp.float32)
  b = b.reshape(*b.shape[:-2], -1).astype(jnp.float32)
  intersection = jnp.einsum("...sp,...gp->...sg", a, b)
  union = jnp.sum(a, -1)[..., :, None] + jnp.sum(b, -1)[..., None, :] - intersection
  return jnp.where(union == 0, 0.0, 1.0 - intersection / jnp.maximum(union, 1.0))


class EnergyDistance(NamedTuple):
  """The generalised energy distance and its terms, each [...]:
  ged = 2 * cross - samples_diversity - graders_diversity."""
  ged: jax.Array
  cross: jax.Array  # E[d(S, Y)], sample against grader.
  samples_diversity: jax.Array  # E[d(S, S')], the model's diversity.
  graders_diversity: jax.Array  # E[d(Y, Y')], the graders' diversity.


def _diversity(masks: jax.Array, unbiased: bool) -> jax.Array:
  """[...] mean d between the masks [..., N, H, W] of one set: over all N^2
  ordered pairs, or over the N (N - 1) with i != j when `unbiased` (NaN for
  N = 1: no pair). d(m, m) = 0, so only the divisor differs."""
  distances, count = pairwise_distances(masks, masks), masks.shape[-3]
  if not unbiased:
    return jnp.mean(distances, axis=(-2, -1))
  if count == 1:
    return jnp.full(distances.shape[:-2], jnp.nan)
  return jnp.sum(distances, axis=(-2, -1)) / (count * (count - 1))


def generalized_energy_distance(samples: jax.Array, graders: jax.Array,
                                unbiased: bool = False) -> EnergyDistance:
  """D^2_GED = 2 E[d(S, Y)] - E[d(S, S')] - E[d(Y, Y')], d = 1 - IoU.

  By default (the literature's estimator) the expectations are means over
  all ordered pairs, i = j included (as in Kohl et al.'s and PHiSeg's
  evaluation code), so one sample (S = 1) is defined: it has no diversity
  and scores 2 E[d(S, Y)] - E[d(Y, Y')]. The included diagonal (zero
  distances) biases it upwards at small S or G, which is why it is judged
  against `expected_ged_of_distribution` with the same S.

  `unbiased=True` averages the two diversity terms over the pairs i != j
  only (U-statistics): for samples drawn i.i.d. from P and graders from Q
  its expectation is the energy distance 2 E d(S, Y) - E d(S, S') - E d(Y, Y')
  of independent draws, whatever S and G (zero when P = Q). One sample or
  one grader has no pair: its diversity, and so the GED, is NaN.

  Args:
    samples: [..., S, H, W] binary masks from the model.
    graders: [..., G, H, W] binary masks from the graders.
    unbiased: diversity over i != j pairs (see above).

  Returns:
    The GED and its terms, each [...] in units of d.
  """
  cross = jnp.mean(pairwise_distances(samples, graders), axis=(-2, -1))
  samples_diversity = _diversity(samples, unbiased)
  graders_diversity = _diversity(graders, unbiased)
  return EnergyDistance(2 * cross - samples_diversity - graders_diversity,
                        cross, samples_diversity, graders_diversity)


def expected_ged_of_distribution(candidates: jax.Array, probabilities: jax.Array,
                                 graders: jax.Array,
                                 num_samples: int) -> EnergyDistance:
  """The ideal GED: the expected `generalized_energy_distance` of S samples
  drawn i.i.d. from a known distribution over masks, against `graders`.

  For samples from pi over K candidate masks c_k, with D_kl = d(c_k, c_l):
    E[cross] = sum_k pi_k mean_g d(c_k, y_g)
    E[samples_diversity] = (1 - 1/S) pi^T D pi   (the S diagonal pairs are 0)
  exactly, so this is the floor a model that samples the true distribution
  reaches in expectation with the same S.

  Args:
    candidates: [..., K, H, W] binary masks.
    probabilities: [..., K], summing to 1.
    graders: [..., G, H, W].
    num_samples: S.
  """
  return _expected_ged(candidates, probabilities, graders,
                       samples_share=1.0 - 1.0 / num_samples, unbiased=False)


def expected_unbiased_ged_of_distribution(candidates: jax.Array,
                                          probabilities: jax.Array,
                                          graders: jax.Array) -> EnergyDistance:
  """The expected `generalized_energy_distance(..., unbiased=True)` of S >= 2
  samples drawn i.i.d. from a known distribution, against `graders`: the
  same for every S, since each of its terms is unbiased:
    E[cross] = sum_k pi_k mean_g d(c_k, y_g)
    E[samples_diversity] = pi^T D pi   (D_kl = d(c_k, c_l))
  and graders_diversity the graders' mean d over their pairs i != j (NaN for
  one grader). For graders drawn from pi themselves it is zero on average
  over their draws (2 pi^T D pi - pi^T D pi - pi^T D pi), not per image: the
  truth's unbiased floor is 0 up to the graders' sampling noise.

  Args:
    candidates: [..., K, H, W] binary masks.
    probabilities: [..., K], summing to 1.
    graders: [..., G, H, W].
  """
  return _expected_ged(candidates, probabilities, graders, samples_share=1.0,
                       unbiased=True)


def _expected_ged(candidates, probabilities, graders, samples_share: float,
                  unbiased: bool) -> EnergyDistance:
  """The two expectations above; samples_share: the share of the samples'
  pairs whose two draws are independent (1 - 1/S with i = j, else 1)."""
  to_graders = pairwise_distances(candidates, graders)  # [..., K, G]
  cross = jnp.einsum("...k,...kg->...", probabilities, to_graders) / graders.shape[-3]
  between = pairwise_distances(candidates, candidates)  # [..., K, K]
  samples_diversity = samples_share * jnp.einsum(
      "...k,...kl,...l->...", probabilities, between, probabilities)
  graders_diversity = _diversity(graders, unbiased)
  return EnergyDistance(2 * cross - samples_diversity - graders_diversity,
                        cross, samples_diversity, graders_diversity)


def hungarian_matched_iou(samples: np.ndarray, graders: np.ndarray) -> np.ndarray:
  """Mean IoU of the best one-to-one matching of samples to graders.

  Every sample is matched and every grader used equally: the samples are
  repeated L / S times and the graders L / G times, L = lcm(S, G), and the
  L x L assignment is solved. With S a multiple of G this is Kohl et al.'s
  protocol (graders repeated S / G times, as the Hierarchical Prob U-Net's
  evaluation does); otherwise it extends it so that no sample goes unjudged
  (S = 3 against 2 graders cannot score 1.0 with an empty third sample, as
  matching only min(S, G) pairs would). The IoU matrix is computed by
  `pairwise_distances`; the assignment (scipy's `linear_sum_assignment`) runs
  on the host, per example.

  Args:
    samples: [..., S, H, W] binary masks.
    graders: [..., G, H, W].

  Returns:
    [...] mean matched IoU in [0, 1] (numpy).
  """
  from scipy.optimize import linear_sum_assignment  # pylint: disable=g-import-not-at-top
  num_samples, num_graders = samples.shape[-3], graders.shape[-3]
  pairs = math.lcm(num_samples, num_graders)
  samples = np.repeat(samples, pairs // num_samples, axis=-3)
  graders = np.repeat(graders, pairs // num_graders, axis=-3)
  ious = 1.0 - np.asarray(jax.jit(pairwise_distances)(samples, graders))
  lead = ious.shape[:-2]
  flat = ious.reshape(-1, *ious.shape[-2:])
  result = np.empty(len(flat))
  for i, matrix in enumerate(flat):
    rows, cols = linear_sum_assignment(matrix, maximize=True)
    result[i] = matrix[rows, cols].mean()
  return result.reshape(lead)


def dice(prediction: jax.Array, truth: jax.Array) -> jax.Array:
  """Dice 2 |P & T| / (|P| + |T|) of binary masks; [...] in [0, 1]; two
  empty masks score 1 (the IoU convention above)."""
  prediction, truth = as_masks(prediction, "prediction"), as_masks(truth, "truth")
  intersection = jnp.sum(prediction & truth, axis=(-2, -1))
  total = jnp.sum(prediction, axis=(-2, -1)) + jnp.sum(truth, axis=(-2, -1))
  return jnp.where(total == 0, 1.0, 2.0 * intersection / jnp.maximum(total, 1))


def expected_calibration_error(samples: jax.Array, graders: jax.Array,
                               num_bins: int = 10) -> jax.Array:
  """ECE of the pixel-wise marginal: each pixel's foreground probability p
  (the share of the S samples that mark it) against the share of the G
  graders that do, over `num_bins` equal bins of p:
  sum_b (n_b / n) |mean(graders' share in b) - mean(p in b)|, over the pixels
  of one image (p = 1 falls in the last bin).

  Args:
    samples: [..., S, H, W] binary masks; graders: [..., G, H, W].

  Returns:
    [...] in [0, 1]; 0 is perfect calibration.
  """
  p = jnp.mean(as_masks(samples, "samples"), axis=-3).reshape(*samples.shape[:-3], -1)
  y = jnp.mean(as_masks(graders, "graders"), axis=-3).reshape(*graders.shape[:-3], -1)
  bins = jax.nn.one_hot(jnp.minimum((p * num_bins).astype(jnp.int32), num_bins - 1),
                        num_bins)  # [..., pixels, bins]
  gap = jnp.abs(jnp.einsum("...pb,...p->...b", bins, y - p))  # |sum over bin|
  return jnp.sum(gap, axis=-1) / p.shape[-1]


def _pearson(a: jax.Array, b: jax.Array) -> jax.Array:
  a, b = a - jnp.mean(a, -1, keepdims=True), b - jnp.mean(b, -1, keepdims=True)
  return jnp.sum(a * b, -1) / jnp.sqrt(jnp.sum(a * a, -1) * jnp.sum(b * b, -1))


def variance_ncc(samples: jax.Array, graders: jax.Array,
                 eps: float = 1e-8) -> jax.Array:
  """PHiSeg's (Baumgartner et al. 2019) S_NCC: the normalised cross
  correlation, over the pixels, of the samples' expected cross-entropy map
  against their mean, E_s[CE(mean sample, s)], with each grader's,
  E_s[CE(y_g, s)]; averaged over the graders. Binary masks as two classes,
  CE(m, s) = -(m log(s + eps) + (1 - m) log(1 - s + eps)) per pixel.
  1: the model is uncertain exactly where the graders disagree with it;
  NaN where a map is constant (e.g. identical samples: no uncertainty).

  Args:
    samples: [..., S, H, W] binary masks; graders: [..., G, H, W].

  Returns:
    [...] in [-1, 1].
  """
  s = as_masks(samples, "samples")
  y = as_masks(graders, "graders").astype(jnp.float32)
  # log(s + eps) and log(1 - s + eps) of binary s, written without the sums:
  # under jit XLA may reassociate 1 - s + eps into (1 + eps) - s = 0.
  log_eps = jnp.log(jnp.float32(eps))
  log_s, log_not_s = jnp.where(s, 0.0, log_eps), jnp.where(s, log_eps, 0.0)
  s = s.astype(jnp.float32)

  def expected_ce(m):  # m [..., H, W] -> E_s CE(m, s), [..., H, W]
    m = m[..., None, :, :]
    return -jnp.mean(m * log_s + (1.0 - m) * log_not_s, axis=-3)

  e_ss = expected_ce(jnp.mean(s, axis=-3)).reshape(*s.shape[:-3], -1)
  e_sy = jax.vmap(expected_ce, in_axes=-3, out_axes=-3)(y)  # [..., G, H, W]
  e_sy = e_sy.reshape(*y.shape[:-2], -1)
  return jnp.mean(_pearson(e_ss[..., None, :], e_sy), axis=-1)


# Kohl et al.'s mode calibration, exact where the candidates are known.
# Default threshold: the offline set's distinct candidates overlap with IoU
# 0.23-0.51 on average (up to 0.96 in rare images), so an IoU of 0.75 with
# the nearest one is a match, well above what two different modes share.
MODE_IOU_THRESHOLD = 0.75


def assign_to_candidates(samples: jax.Array, candidates: jax.Array,
                         threshold: float = MODE_IOU_THRESHOLD) -> jax.Array:
  """Each sample's nearest candidate mask by IoU, or "none of them".

  Args:
    samples: [..., S, H, W] binary masks.
    candidates: [..., K, H, W], the masks a grader can give.
    threshold: the least IoU with the nearest candidate that counts as a
      match; ties go to the first candidate.

  Returns:
    [..., S] int32 in 0..K: the candidate's index, K where the nearest
    candidate's IoU is below `threshold` (unmatched).
  """
  ious = 1.0 - pairwise_distances(samples, candidates)  # [..., S, K]
  nearest = jnp.argmax(ious, axis=-1)
  matched = jnp.max(ious, axis=-1) >= threshold
  return jnp.where(matched, nearest, candidates.shape[-3]).astype(jnp.int32)


def mode_frequencies(samples: jax.Array, candidates: jax.Array,
                     threshold: float = MODE_IOU_THRESHOLD) -> jax.Array:
  """[..., K + 1]: the share of the S samples assigned to each candidate
  (`assign_to_candidates`), the last entry the unmatched share."""
  assigned = assign_to_candidates(samples, candidates, threshold)
  return jnp.mean(jax.nn.one_hot(assigned, candidates.shape[-3] + 1), axis=-2)


def true_mode_frequencies(candidates: jax.Array, probabilities: jax.Array,
                          threshold: float = MODE_IOU_THRESHOLD) -> jax.Array:
  """[..., K + 1]: what `mode_frequencies` converges to for samples drawn
  from the candidates with `probabilities` [..., K]: each candidate's mass
  goes where the same assignment sends the candidate itself, so identical
  candidates (rare images where tight = loose) pool their mass in the first
  and the truth's unmatched share is 0."""
  assigned = assign_to_candidates(candidates, candidates, threshold)  # [..., K]
  return jnp.einsum("...k,...kj->...j", probabilities,
                    jax.nn.one_hot(assigned, candidates.shape[-3] + 1))


def total_variation(p: jax.Array, q: jax.Array) -> jax.Array:
  """1/2 sum |p - q| over the last axis: [...] in [0, 1]."""
  return 0.5 * jnp.sum(jnp.abs(p - q), axis=-1)
