"""Ambiguous segmentation (Kohl et al. 2018): figures of the distribution of
masks a model draws for an image, for any model through its `Predictor`.

Data: {"image" [N, H, W, C], "masks" [N, G, H, W] (G graders)} and, where
the grader distribution is known exactly (the offline set), "candidates"
[N, K, H, W] and "probabilities" [N, K]: then each evaluator also reports
the true distribution's own figures (`ideal_*`), the exact floor, and the
exact figures of the best distribution that ignores the image
(`marginal_*`): the mean of "probabilities" over the evaluated test images
(`marginal_probabilities`), which equals the truth where the probabilities
are the same for every image and is the reference a model must beat to show
it reads x where they are not. A prediction becomes a mask where
p(y = 1) > 0.5 (`masks_of`); a grader's mask is a target of the predictor's
`log_likelihood` as flat float pixels [B, H * W] (`flat_target`).

Evaluators (each `make_*` returns an `Evaluator`; figures per image, with
their spread over images under "<name>_std"):
  samples      ged_S for S in `ged_samples` (d = 1 - IoU, i = j pairs
               included, `metrics.generalized_energy_distance`: the
               literature's estimator), ged_unbiased_S beside it for S >= 2
               (diversity over i != j pairs only: its expectation does not
               depend on S; left out for S = 1, and for one grader, where it
               is undefined), the terms at the largest S (cross,
               samples_diversity, graders_diversity), hungarian_iou over
               `hungarian_samples` samples and the G graders; known
               distribution: floor_ged_S (exact expected GED of the truth),
               floor_ged_unbiased (exact expected ged_unbiased_S of the
               truth, the same for every S: 0 on average over the graders'
               draws), ideal_* (S draws of the truth), marginal_floor_ged_S
               and marginal_floor_ged_unbiased (the same expectations for
               samples of the marginal);
  likelihoods  ce_per_pixel: -log p(y_g | x) per pixel of the point
               prediction, nll: -log p(y_g | x) per image from the
               predictor's log-likelihood (its label is in results.json's
               "estimators"); both means over the graders; ideal_nll: the
               truth's exact -log p(y_g | x); marginal_nll: the marginal's
               exact -log p(y_g), at least ideal_nll on average;
  calibration  ece of the pixel-wise marginal of `num_samples` samples (10
               bins), variance_ncc (PHiSeg's S_NCC, over the images where it
               is defined; variance_ncc_defined: their share), dice of the
               point prediction with each grader (dice_grader_g) and their mean;
  modes        (known distribution only) each of `num_samples` samples
               assigned to its nearest candidate by IoU, or to none below
               `iou_threshold`: mode_tv per image and mode_tv_pooled against
               the true frequencies, the unmatched share, and
               mode_frequency_<candidate> beside true_mode_frequency_<candidate>;
               marginal_mode_tv (and _pooled): the same TV for the
               frequencies the marginal's samples converge to, exact (the
               pooled one is blind to x: ~0); draws modes.png.
  panel        panel.png: per image, the image, its graders' masks and
               `num_samples` sampled predictions' p(y = 1).
`epoch_evaluation` gives the per-epoch figures (validation GED and NLL) that
early stopping can select on.
"""

from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cvae_jax import distributions, evaluation, metrics, plotting
from cvae_jax.errors import ConfigError
from cvae_jax.evaluators.base import Evaluator, measured
from cvae_jax.evaluators.pictures import picture
from cvae_jax.predictors import Predictor

__all__ = ["KNOWN_DISTRIBUTION", "UNITS", "masks_of", "flat_target",
           "marginal_probabilities", "true_negative_log_likelihood", "true_samples",
           "negative_log_likelihood", "with_spread", "make_samples",
           "make_likelihoods", "make_calibration", "make_modes",
           "epoch_evaluation", "epoch_line", "HEADLINE", "make_panel"]

KNOWN_DISTRIBUTION = ("candidates", "probabilities")
# What each figure is measured in (results.json's "units").
UNITS = {"ged_*, cross, *_diversity": "d = 1 - IoU",
         "*ged_unbiased_*, *floor_ged_unbiased": "d = 1 - IoU, diversity over "
                                                 "pairs i != j: the same "
                                                 "expectation for every S",
         "marginal_*": "exact figure of the best distribution that ignores "
                       "the image: the mean of the test images' true "
                       "probabilities",
         "*mode_tv": "total variation between one image's sampled and true "
                     "candidate frequencies (S = eval.num_samples: includes "
                     "sampling noise, compare ideal_mode_tv)",
         "*mode_tv_pooled": "the same for the frequencies averaged over images",
         "*unmatched": "share of samples with IoU < eval.mode_iou_threshold to "
                       "every candidate",
         "*mode_frequency_*": "share of samples assigned to the candidate, mean "
                              "over images",
         "hungarian_iou": "mean matched IoU",
         "*ece": "expected calibration error of the pixel-wise marginal, 10 bins",
         "*variance_ncc": "PHiSeg's S_NCC in [-1, 1], over the images where it is "
                          "defined (*_defined: their share)",
         "dice": "mean Dice of the point prediction with each grader",
         "ce_per_pixel": "nats per pixel", "nll": "nats per image"}


def masks_of(prediction, size: int) -> jax.Array:
  """[..., H, W] bool: the pixels where p(y = 1) > 0.5 of a prediction with
  flat pixels [..., H * W] (Bernoulli: logits > 0)."""
  logits = getattr(prediction, "logits", None)
  on = logits > 0 if logits is not None else distributions.mean_of(prediction) > 0.5
  if on.shape[-1] != size * size:
    raise ConfigError(f"a prediction of shape {on.shape} is not flat pixels "
                      f"[..., H * W] = [..., {size * size}]; return masks' logits "
                      "flattened")
  return on.reshape(*on.shape[:-1], size, size)


def flat_target(masks: jax.Array, dtype=jnp.float32) -> jax.Array:
  """[B, H, W] masks -> [B, H * W] float targets."""
  return masks.reshape(masks.shape[0], -1).astype(dtype)


def marginal_probabilities(probabilities) -> np.ndarray:
  """[K] float32: of the distributions over the candidates that ignore the
  image, the one with the least expected -log p(y_g) over these images and
  their graders' draws: the mean of their true probabilities [N, K]. The
  candidates' index k must name the same kind of mask in every image (the
  offline set's CANDIDATE_NAMES); exact up to images whose candidates
  coincide, where masses pool."""
  return np.mean(np.asarray(probabilities, np.float64), axis=0).astype(np.float32)


def true_negative_log_likelihood(candidates, probabilities, masks) -> jax.Array:
  """[B] the known grader distribution's exact -log p(y_g | x) in nats, mean
  over the graders' masks [B, G, H, W]: -log of the mass of the candidates
  [B, K, H, W] (probabilities [B, K]) equal to y_g."""
  same = jnp.all(candidates[:, None] == (masks > 0.5)[:, :, None], axis=(-2, -1))
  return -jnp.log(jnp.sum(same * probabilities[:, None], -1)).mean(-1)  # [B, G, K] -> [B]


def true_samples(candidates, probabilities, rng, num_samples) -> jax.Array:
  """[B, S, H, W] masks drawn from each image's known grader distribution."""
  choice = jax.random.categorical(rng, jnp.log(probabilities),
                                  shape=(num_samples, len(probabilities)))
  return jnp.take_along_axis(candidates, choice.T[:, :, None, None], axis=1)


def negative_log_likelihood(predictor: Predictor, params, images, masks, rng,
                            num_samples: int) -> jax.Array:
  """[B] -log p(y_g | x) in nats per image, mean over the G graders of masks
  [B, G, H, W]; grader g's estimate draws S = `num_samples` from
  fold_in(rng, g)."""
  return jnp.stack([-predictor.log_likelihood(
      params, {"condition": images, "target": flat_target(g, images.dtype)},
      jax.random.fold_in(rng, i), num_samples)
                    for i, g in enumerate(jnp.moveaxis(masks, 1, 0))]).mean(0)


def _sampled_masks(predictor, params, images, rng, num_samples, size):
  """[B, S, H, W] masks of S predictions per image."""
  samples = predictor.samples(params, images, rng, num_samples)
  return jnp.moveaxis(masks_of(samples, size), 0, 1)


def _ged_columns(prefix: str, samples, graders, counts) -> dict:
  """{prefix}ged_S, {prefix}ged_unbiased_S etc. for the first S of samples
  [B, S_max, H, W]."""
  columns = {}
  for s in counts:
    terms = metrics.generalized_energy_distance(samples[:, :s], graders)
    columns[f"{prefix}ged_{s}"] = terms.ged
    if s > 1 and graders.shape[1] > 1:  # Else no pair i != j: undefined.
      columns[f"{prefix}ged_unbiased_{s}"] = metrics.generalized_energy_distance(
          samples[:, :s], graders, unbiased=True).ged
    if s == max(counts):
      columns[f"{prefix}cross"] = terms.cross
      columns[f"{prefix}samples_diversity"] = terms.samples_diversity
      columns[f"{prefix}graders_diversity"] = terms.graders_diversity
  return columns


def with_spread(per_image: dict) -> dict:
  """Per-image values and their spread over images under "<name>_std"."""
  return {**per_image, **{f"{k}_std": float(np.std(v)) for k, v in per_image.items()}}


def _arrays(test: dict) -> dict:
  """The evaluated arrays; with a known distribution also
  "marginal_probabilities" [N, K], the marginal over all of `test` (the
  same row for every image, so that each batch has it)."""
  arrays = {k: test[k] for k in ("image", "masks", *KNOWN_DISTRIBUTION) if k in test}
  if _known(test):
    arrays["marginal_probabilities"] = np.broadcast_to(
        marginal_probabilities(test["probabilities"]), test["probabilities"].shape)
  return arrays


def _floor_columns(prefix: str, candidates, probabilities, graders, counts) -> dict:
  """{prefix}floor_ged_S for each S and {prefix}floor_ged_unbiased: the
  exact expected GEDs of samples of `probabilities` [B, K]."""
  columns = {f"{prefix}floor_ged_{s}": metrics.expected_ged_of_distribution(
      candidates, probabilities, graders, s).ged for s in counts}
  if graders.shape[1] > 1:
    columns[f"{prefix}floor_ged_unbiased"] = (
        metrics.expected_unbiased_ged_of_distribution(
            candidates, probabilities, graders).ged)
  return columns


def _known(test: dict) -> bool:
  return all(k in test for k in KNOWN_DISTRIBUTION)


def make_samples(predictor: Predictor, image_size: int, batch_size: int,
                 num_samples: int = 100,
                 ged_samples: Sequence[int] = (1, 4, 16, 100),
                 hungarian_samples: int = 16) -> Evaluator:
  """GED at each S of `ged_samples` (the first S of `num_samples` draws per
  image), its terms, Hungarian IoU; see above."""
  counts = tuple(ged_samples)
  most = max(num_samples, *counts, hungarian_samples)

  def sampled(params, arrays, rng):
    samples = _sampled_masks(predictor, params, arrays["image"], rng, most,
                             image_size)
    graders = arrays["masks"] > 0.5
    columns = _ged_columns("", samples, graders, counts)
    if "candidates" in arrays:
      truth = true_samples(arrays["candidates"], arrays["probabilities"],
                           jax.random.fold_in(rng, 1), most)
      columns.update(_ged_columns("ideal_", truth, graders, counts))
      for prefix, probabilities in (("", arrays["probabilities"]),
                                    ("marginal_", arrays["marginal_probabilities"])):
        columns.update(_floor_columns(prefix, arrays["candidates"], probabilities,
                                      graders, counts))
      columns["ideal_samples"] = truth[:, :hungarian_samples]
    columns["samples"] = samples[:, :hungarian_samples]
    return columns

  def run(params, test, rng, workdir):
    del workdir
    columns = measured("samples: GED, diversity, Hungarian IoU", "images",
                       sampled, params, _arrays(test), rng, batch_size, as_dict=True)
    per_image = {k: v for k, v in columns.items() if not k.endswith("samples")}
    graders = test["masks"] > 0.5
    per_image["hungarian_iou"] = metrics.hungarian_matched_iou(columns["samples"],
                                                               graders)
    if "ideal_samples" in columns:
      per_image["ideal_hungarian_iou"] = metrics.hungarian_matched_iou(
          columns["ideal_samples"], graders)
    return with_spread(per_image)
  return Evaluator("samples", run)


def make_likelihoods(predictor: Predictor, image_size: int, batch_size: int,
                     num_samples: int = 100) -> Evaluator:
  """Per-pixel CE of the point prediction and -log p(y | x) from
  `num_samples` draws where the predictor estimates it; see above."""
  label = predictor.log_likelihood_label
  if label is not None and label != "exact":
    label = f"{label}, S={num_samples}"

  def likelihoods(params, arrays, rng):
    images, masks = arrays["image"], arrays["masks"]
    point = predictor.point(params, images)
    targets = masks.reshape(*masks.shape[:2], -1)  # [B, G, H * W]
    ce = -point.log_prob(jnp.moveaxis(targets, 1, 0)) / image_size**2  # [G, B]
    columns = {"ce_per_pixel": ce.mean(0)}
    if label is not None:
      columns["nll"] = negative_log_likelihood(predictor, params, images, masks,
                                               rng, num_samples)
    if "candidates" in arrays:
      columns["ideal_nll"] = true_negative_log_likelihood(
          arrays["candidates"], arrays["probabilities"], masks)
      columns["marginal_nll"] = true_negative_log_likelihood(
          arrays["candidates"], arrays["marginal_probabilities"], masks)
    return columns

  def run(params, test, rng, workdir):
    del workdir
    title = "per-pixel CE" + (f" and -log p(y|x) ({label})" if label else "")
    columns = measured(title, "images", likelihoods, params, _arrays(test), rng,
                       batch_size, as_dict=True)
    return with_spread(columns)
  return Evaluator("likelihoods", run, estimators={"nll": label} if label else {})


def make_calibration(predictor: Predictor, image_size: int, batch_size: int,
                     num_samples: int = 100) -> Evaluator:
  """ECE, S_NCC and Dice; see above."""

  def calibrated(params, arrays, rng):
    samples = _sampled_masks(predictor, params, arrays["image"], rng, num_samples,
                             image_size)
    graders = arrays["masks"] > 0.5
    point = masks_of(predictor.point(params, arrays["image"]), image_size)
    by_grader = metrics.dice(point[:, None], graders)  # [B, G]
    columns = {"ece": metrics.expected_calibration_error(samples, graders),
               "variance_ncc": metrics.variance_ncc(samples, graders),
               "dice": jnp.mean(by_grader, axis=-1),
               **{f"dice_grader_{g}": by_grader[:, g]
                  for g in range(graders.shape[1])}}
    if "candidates" in arrays:
      truth = true_samples(arrays["candidates"], arrays["probabilities"],
                           jax.random.fold_in(rng, 1), num_samples)
      columns["ideal_ece"] = metrics.expected_calibration_error(truth, graders)
      columns["ideal_variance_ncc"] = metrics.variance_ncc(truth, graders)
    return columns

  def run(params, test, rng, workdir):
    del workdir
    columns = measured(f"calibration: ECE, S_NCC, Dice (S={num_samples})",
                       "images", calibrated, params, _arrays(test), rng,
                       batch_size, as_dict=True)
    figures = {}
    for name, values in columns.items():
      values = np.asarray(values)
      if name.endswith("variance_ncc"):  # NaN: no uncertainty to correlate.
        defined = ~np.isnan(values)
        figures[f"{name}_defined"] = float(np.mean(defined))
        if defined.any():  # (Never for a deterministic net: its samples are one.)
          figures[name] = float(np.mean(values[defined]))
          figures[f"{name}_std"] = float(np.std(values[defined]))
      else:
        figures[name], figures[f"{name}_std"] = values, float(np.std(values))
    return figures
  return Evaluator("calibration", run)


def make_modes(predictor: Predictor, image_size: int, batch_size: int,
               num_samples: int = 100,
               iou_threshold: float = metrics.MODE_IOU_THRESHOLD,
               candidate_names: Sequence[str] | None = None,
               title: str = "model") -> Evaluator:
  """Kohl et al.'s mode calibration, exact where the data has candidates
  (nothing elsewhere); modes.png titled by `title` (the model's name)."""

  def mode_columns(params, arrays, rng):
    samples = _sampled_masks(predictor, params, arrays["image"], rng, num_samples,
                             image_size)
    candidates, probabilities = arrays["candidates"], arrays["probabilities"]
    truth = true_samples(candidates, probabilities, jax.random.fold_in(rng, 1),
                         num_samples)
    return {"sampled": metrics.mode_frequencies(samples, candidates, iou_threshold),
            "ideal": metrics.mode_frequencies(truth, candidates, iou_threshold),
            "true": metrics.true_mode_frequencies(candidates, probabilities,
                                                  iou_threshold),
            "marginal": metrics.true_mode_frequencies(
                candidates, arrays["marginal_probabilities"], iou_threshold)}

  def run(params, test, rng, workdir: Path | None):
    if not _known(test):
      return {}
    columns = measured(
        f"modes: frequencies of the candidates (S={num_samples}, IoU >= "
        f"{iou_threshold})", "images", mode_columns, params, _arrays(test), rng,
        batch_size, as_dict=True)
    true = np.asarray(columns["true"])
    figures, means = {}, {"true": true.mean(0)}
    for prefix, label in (("", title), ("ideal_", "true distribution, sampled")):
      frequencies = np.asarray(columns["sampled" if prefix == "" else "ideal"])
      tv = np.asarray(metrics.total_variation(frequencies, true))
      figures.update({f"{prefix}mode_tv": tv, f"{prefix}mode_tv_std": float(np.std(tv)),
                      f"{prefix}mode_tv_pooled": float(metrics.total_variation(
                          frequencies.mean(0), true.mean(0))),
                      f"{prefix}unmatched": frequencies[:, -1],
                      f"{prefix}unmatched_std": float(np.std(frequencies[:, -1]))})
      means[label] = frequencies.mean(0)
    marginal = np.asarray(columns["marginal"])  # Exact: no unmatched share.
    tv = np.asarray(metrics.total_variation(marginal, true))
    figures.update({"marginal_mode_tv": tv, "marginal_mode_tv_std": float(np.std(tv)),
                    "marginal_mode_tv_pooled": float(metrics.total_variation(
                        marginal.mean(0), true.mean(0)))})
    num_candidates = true.shape[-1] - 1
    names = [*(candidate_names or [f"candidate {k}" for k in range(num_candidates)]),
             "unmatched"]
    for k, name in enumerate(names):
      slug = name.replace(" ", "_")
      figures[f"mode_frequency_{slug}"] = float(means[title][k])
      figures[f"true_mode_frequency_{slug}"] = float(means["true"][k])
    if workdir is not None:
      plotting.save_bar_chart(
          names, {label: means[label] for label in (
              title, "true distribution, sampled", "true")},
          Path(workdir) / "modes.png", "share of samples (mean over images)",
          f"{title}: samples assigned to the nearest candidate "
          f"(IoU >= {iou_threshold})")
    return figures
  return Evaluator("modes", run)


def epoch_evaluation(predictor: Predictor, validation_loss: Callable,
                     validation: dict, rng: jax.Array, image_size: int,
                     batch_size: int, num_images: int = 0,
                     num_samples: int = 16) -> Callable[..., dict]:
  """The trainer's per-epoch evaluation, with the same draws every epoch (so
  epochs compare fairly): validation_loss (`validation_loss(params, arrays,
  rng) -> [B]` over the validation split) and, over its first `num_images`
  images (0: all) with S = `num_samples`, validation_ged (d = 1 - IoU) and,
  where the predictor has one, validation_nll (-log p(y_g | x), nats per
  image, mean over graders). With a known distribution also the floor's GED
  and the truth's NLL on those images (constants: the learning curves'
  targets). Returns (state, epoch) -> {name: float}."""
  loss = evaluation.validation_loss_evaluator(validation_loss, validation, rng,
                                              batch_size)
  count = num_images or len(validation["image"])
  subset = {k: v[:count] for k, v in validation.items() if k in ("image", "masks")}
  has_nll = predictor.log_likelihood_label is not None

  def figures(params, arrays, rng):
    samples = _sampled_masks(predictor, params, arrays["image"], rng, num_samples,
                             image_size)
    columns = {"ged": metrics.generalized_energy_distance(
        samples, arrays["masks"] > 0.5).ged}
    if has_nll:
      columns["nll"] = negative_log_likelihood(
          predictor, params, arrays["image"], arrays["masks"],
          jax.random.fold_in(rng, 1), num_samples)
    return columns

  targets = {}
  if _known(validation):
    graders = validation["masks"][:count] > 0.5
    candidates = validation["candidates"][:count]
    probabilities = validation["probabilities"][:count]
    targets["validation_floor_ged"] = float(np.mean(
        metrics.expected_ged_of_distribution(candidates, probabilities, graders,
                                             num_samples).ged))
    targets["validation_ideal_nll"] = float(np.mean(true_negative_log_likelihood(
        candidates, probabilities, graders)))

  def evaluate(state, epoch: int) -> dict[str, float]:
    values = evaluation.map_dict_over_batches(
        figures, state.params, subset, jax.random.fold_in(rng, 1), batch_size)
    return {**loss(state, epoch), **{f"validation_{k}": float(np.mean(v))
                                     for k, v in values.items()}, **targets}
  return evaluate


def epoch_line(epoch: int, values: dict) -> str:
  """The log line of `epoch_evaluation`'s figures, targets in brackets."""
  line = (f"epoch {epoch} validation loss {values['validation_loss']:.4f} "
          f"nats/image, GED {values['validation_ged']:.4f}")
  if "validation_floor_ged" in values:
    line += f" (floor {values['validation_floor_ged']:.4f})"
  if "validation_nll" in values:
    line += f", -log p(y|x) {values['validation_nll']:.3f}"
  if "validation_ideal_nll" in values:
    line += f" (ideal {values['validation_ideal_nll']:.3f})"
  return line


# The figures a run's final line shows (a name, or a prefix ending in "_").
HEADLINE = ("ged_", "floor_ged_", "samples_diversity", "hungarian_iou",
            "ce_per_pixel", "nll", "mode_tv_pooled", "unmatched")


def make_panel(predictor: Predictor, image_size: int, num_images: int = 8,
               num_samples: int = 6) -> Evaluator:
  """panel.png, [1 + G + num_samples rows, num_images, H, W] in [0, 1]: the
  image, its G graders' masks, then sampled predictions' p(y = 1)."""
  def draw(params, test, rng):
    images = jnp.asarray(test["image"][:num_images])
    samples = predictor.samples(params, images, rng, num_samples)
    probabilities = np.asarray(distributions.mean_of(samples)).reshape(
        -1, len(images), image_size, image_size)
    return np.concatenate([test["image"][None, :num_images, ..., 0],
                           np.moveaxis(test["masks"][:num_images], 1, 0),
                           probabilities])
  return picture("panel", draw, "panel.png")
