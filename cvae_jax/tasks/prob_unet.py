"""Ambiguous segmentation (Kohl et al. 2018): the deterministic U-Net, Sohn
et al.'s conv CVAE and the Probabilistic U-Net, on the generic trainer.

Data, through the segmentation interface {"image" [N, H, W, 1],
"masks" [N, G, H, W]}: the offline set `mnist_ambiguous` (G = 4 graders drawn
from a known distribution; `cvae_jax.data.mnist_ambiguous`) or `lidc`
(LIDC-IDRI crops, 4 graders; `cvae_jax.data.lidc`). Each training step uses
one grader's mask per example, drawn at random.

Objectives (nats per image):
  unet       -log p(y | x), independent Bernoulli pixels;
  prob_unet  Kohl et al.: E_q[-log p(y | x, z)] + beta * KL(q || p), one z;
  sohn_cvae  the segmentation task's CVAE objective (-ELBO + its baseline's
             own -log p(y | x)), with `sohn_network`.

Test figures, per image over the first `eval.num_images` test images, with
S samples z ~ p(z | x) (the U-Net's one prediction stands for all S):
  ged_S and its terms (cross, samples_diversity, graders_diversity) for S in
    eval.ged_samples, d = 1 - IoU (`metrics.generalized_energy_distance`);
  hungarian_iou over eval.hungarian_samples samples and the G graders;
  ce_per_pixel: -log p(y_g | x) per pixel of the prediction at z = E[z | x]
    (the U-Net's own), mean over graders;
  nll: -log p(y_g | x) per image, mean over graders: exact for the U-Net,
    importance-sampled from q(z | x, y) (S = eval.num_samples) for the CVAEs;
  (the `calibration` evaluator, S = eval.num_samples) ece: the expected
    calibration error of the pixel-wise marginal (10 bins), variance_ncc:
    PHiSeg's S_NCC over the images where it is defined (variance_ncc_defined:
    their share; never for the U-Net), dice: the prediction at z = E[z | x]
    against each grader, mean over graders, and dice_grader_g per grader
    (`metrics`);
  (the `modes` evaluator, offline set only) Kohl et al.'s mode calibration:
    each of S = eval.num_samples samples assigned to its nearest candidate
    mask by IoU, or to none below eval.mode_iou_threshold
    (`metrics.assign_to_candidates`); mode_tv per image and mode_tv_pooled
    over the images' mean frequencies against the true ones, the unmatched
    share, mode_frequency_<candidate> beside true_mode_frequency_<candidate>,
    and modes.png (the bar chart).
Per epoch (`epoch_evaluation`): validation loss, GED and -log p(y|x).
On the offline set, the same figures for S masks sampled from the true
grader distribution (`ideal_*`; `ideal_nll` is its exact -log p(y_g | x)),
and the exact expected GED of that distribution (`floor_ged_S`,
`metrics.expected_ged_of_distribution`).
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cvae_jax import (distributions, estimators, evaluation, evaluators, metrics,
                      objectives, plotting, runner, sampling, schedules)
from cvae_jax.errors import (ConfigError, UserError, check_workdir,
                             require_choice, require_positive_ints)
from cvae_jax.models import prob_unet as models
from cvae_jax.tasks import segmentation as seg_task
from cvae_jax.training import trainer

MODEL_KINDS = ("unet", "prob_unet", "sohn_cvae")
DATASETS = ("mnist_ambiguous", "lidc")


def ambiguity_spec(config):
  """The offline set's `AmbiguitySpec` from config.image_size and config.data."""
  from cvae_jax.data.mnist_ambiguous import AmbiguitySpec  # pylint: disable=g-import-not-at-top
  return AmbiguitySpec(
      size=config.image_size, digit_size=config.data.digit_size,
      num_graders=config.data.num_graders,
      structure_probabilities=tuple(config.data.structure_probabilities),
      loose_probability=config.data.loose_probability)


def sohn_config(config) -> ml_collections.ConfigDict:
  """The segmentation task's config for Sohn et al.'s CVAE on these images."""
  return ml_collections.ConfigDict(dict(
      model="cvae", image_size=config.image_size, hybrid_alpha=0.5,
      gsnn_samples=1, multiscale_levels=0, multiscale_weight=0.0,
      network=config.sohn_network.to_dict()))


def validate(config: ml_collections.ConfigDict, workdir: str | Path) -> None:
  """Raises ConfigError / UserError for impossible settings; loads no data."""
  workdir = Path(workdir).expanduser()
  check_workdir(workdir)
  require_choice(config, "model", MODEL_KINDS)
  require_choice(config, "dataset", DATASETS)
  require_positive_ints(config, ("image_size",))
  require_positive_ints(config.network, (
      "latent_size", "convs_per_block"), "network.")
  if not config.network.channels or min(config.network.channels) <= 0:
    raise ConfigError("network.channels must be positive channel counts, one "
                      f"per U-Net block, got {tuple(config.network.channels)}; "
                      "set --config.network.channels")
  halvings = len(config.network.channels) - 1
  if config.image_size % 2 ** halvings:
    raise ConfigError(
        f"image_size={config.image_size} cannot be halved {halvings} times by "
        f"a U-Net of {halvings + 1} blocks; set --config.image_size to a "
        f"multiple of {2 ** halvings} or use fewer network.channels")
  if config.beta < 0:
    raise ConfigError(f"beta must be >= 0, got {config.beta}; set --config.beta")
  if config.network.fcomb_convs < 0:
    raise ConfigError("network.fcomb_convs must be >= 0; set "
                      "--config.network.fcomb_convs")
  if config.model == "sohn_cvae":
    seg_task.check_network_geometry(sohn_config(config))
  if config.dataset == "mnist_ambiguous":
    ambiguity_spec(config).check()
  elif not config.data.lidc_path:
    raise UserError("dataset=lidc needs the preprocessed LIDC file; pass "
                    "--config.data.lidc_path=/path/to/data_lidc.pickle "
                    "(where to get it: cvae_jax/data/lidc.py)")
  else:
    from cvae_jax.data import lidc  # pylint: disable=g-import-not-at-top
    lidc.check_fractions(tuple(config.data.lidc_fractions))
  require_positive_ints(config.eval, (
      "batch_size", "num_samples", "chunk_size", "hungarian_samples",
      "figure_images", "figure_samples"), "eval.")
  if config.eval.num_samples % min(config.eval.chunk_size, config.eval.num_samples):
    raise ConfigError(f"eval.num_samples={config.eval.num_samples} must be a "
                      f"multiple of eval.chunk_size={config.eval.chunk_size}")
  if not config.eval.ged_samples or min(config.eval.ged_samples) < 1 or max(
      config.eval.ged_samples) > config.eval.num_samples:
    raise ConfigError(f"eval.ged_samples {tuple(config.eval.ged_samples)} must "
                      f"be sample counts in 1..eval.num_samples="
                      f"{config.eval.num_samples}")
  trainer.validate_trainer_config(config)


def make_model(config):
  """DeterministicUNet, ProbabilisticUNet or seg_models.SegmentationCVAE."""
  net = config.network
  if config.model == "sohn_cvae":
    return seg_task.make_model(sohn_config(config))
  if config.model == "unet":
    return models.DeterministicUNet(tuple(net.channels), net.convs_per_block)
  return models.ProbabilisticUNet(
      tuple(net.channels), net.latent_size, net.convs_per_block,
      net.fcomb_convs, net.log_variance_bound)


def load_splits(config) -> dict[str, dict[str, np.ndarray]]:
  """{"train", "validation", "test"} -> {"image", "masks", ...} arrays."""
  # pylint: disable=g-import-not-at-top
  limits = {"train": config.data.max_train_examples,
            "validation": config.data.max_eval_examples,
            "test": config.data.max_eval_examples}
  if config.dataset == "lidc":
    from cvae_jax.data import lidc
    splits = lidc.load_lidc_splits(
        Path(config.data.lidc_path).expanduser(),
        tuple(config.data.lidc_fractions), config.data.seed,
        {k: v for k, v in limits.items() if v})
  else:
    from cvae_jax.data import mnist, mnist_ambiguous
    mnist.prepare_mnist(config.data_dir, download=config.download)
    splits = mnist_ambiguous.load_ambiguous_splits(
        config.data_dir, ambiguity_spec(config), config.validation_size,
        config.data.seed, limits)
  image = splits["test"]["image"]
  if image.shape[1:3] != (config.image_size,) * 2:
    raise UserError(f"the {config.dataset} images are {image.shape[1]}x"
                    f"{image.shape[2]}, not image_size={config.image_size}; "
                    f"set --config.image_size={image.shape[1]}")
  return splits


def objective_batch(images: jax.Array, masks: jax.Array) -> dict:
  """{condition [B, H, W, C], target [B, H * W]} from one mask per image."""
  return {"condition": images,
          "target": masks.reshape(masks.shape[0], -1).astype(images.dtype)}


def per_example_objective(config, model):
  """(params, objective batch, rng, kl_weight=1) -> ([B] nats, {term: [B]});
  the Prob U-Net's KL is weighted by beta x kl_weight."""
  if config.model == "unet":
    return lambda p, b, r, w=1.0: (
        objectives.baseline_negative_log_likelihood(model, p, b), {})
  if config.model == "sohn_cvae":
    sohn = seg_task.per_example_objective(sohn_config(config), model)
    return lambda p, b, r, w=1.0: (sohn(p, b, r, w), {})

  def kohl(params, batch, rng, kl_weight=1.0):
    terms = objectives.negative_elbo(model, params, batch, rng)
    return (terms.reconstruction + config.beta * kl_weight * terms.kl,
            {"reconstruction": terms.reconstruction, "kl": terms.kl})
  return kohl


def make_loss_fn(config, model):
  """The trainer's loss_fn: one random grader per example; mean nats/image,
  with the Prob U-Net's reconstruction and KL logged beside it."""
  per_example, kl_weight = per_example_objective(config, model), schedules.kl_weight(config)

  def loss_fn(params, arrays, rng, step=0):
    grader_rng, objective_rng = jax.random.split(rng)
    masks = seg_task.pick_grader(arrays["masks"], grader_rng)
    loss, terms = per_example(params, objective_batch(arrays["image"], masks),
                              objective_rng, kl_weight(step))
    return jnp.mean(loss), {k: jnp.mean(v) for k, v in terms.items()}
  return loss_fn


def run_identity(config) -> dict:
  """Settings the checkpoints depend on beyond their shapes."""
  identity = {k: config[k] for k in ("model", "dataset", "image_size", "beta",
                                     "validation_size")}
  identity.update(data=config.data.to_dict(), network=config.network.to_dict())
  if config.model == "sohn_cvae":
    identity["sohn_network"] = config.sohn_network.to_dict()
  return identity


# ---------------------------------------------------------------- evaluation


def sample_logits(config, model, params, images: jax.Array, rng: jax.Array,
                  num_samples: int) -> jax.Array:
  """[S, B, H * W] logits of S segmentations per image, z ~ p(z | x); the
  deterministic U-Net's one prediction repeated."""
  if config.model == "unet":
    logits = model.apply(params, images).logits
    return jnp.broadcast_to(logits, (num_samples, *logits.shape))
  return sampling.prior_predictive(model, params, images, rng,
                                  num_samples)[0].logits


def cvae_negative_log_likelihood(model, params, images: jax.Array, masks: jax.Array,
                                 rng: jax.Array, num_samples: int, chunk_size: int,
                                 features=None) -> jax.Array:
  """[B] -log p(y_g | x) in nats per image, mean over the G graders of masks
  [B, G, H, W]: importance-sampled from q(z | x, y_g), `num_samples` draws in
  chunks of `chunk_size`; `features` the prior pass's, when computed."""
  chunk = min(chunk_size, num_samples)
  return jnp.stack([-estimators.cvae_log_likelihood(
      model, params, objective_batch(images, g), jax.random.fold_in(rng, i),
      num_samples, "recognition", chunk, rows_per_slice=chunk * len(images),
      features=features) for i, g in enumerate(jnp.moveaxis(masks, 1, 0))]).mean(0)


def true_negative_log_likelihood(candidates, probabilities, masks) -> jax.Array:
  """[B] the known grader distribution's exact -log p(y_g | x) in nats, mean
  over the graders' masks [B, G, H, W]: -log of the mass of the candidates
  [B, K, H, W] (probabilities [B, K]) equal to y_g."""
  same = jnp.all(candidates[:, None] == (masks > 0.5)[:, :, None], axis=(-2, -1))
  return -jnp.log(jnp.sum(same * probabilities[:, None], -1)).mean(-1)  # [B, G, K] -> [B]


def _as_masks(logits: jax.Array, size: int) -> jax.Array:
  return (logits > 0).reshape(*logits.shape[:-1], size, size)


def _ged_columns(prefix: str, samples: jax.Array, graders: jax.Array,
                 counts) -> dict:
  """{prefix}ged_S etc. for the first S of samples [B, S_max, H, W]."""
  columns = {}
  for s in counts:
    terms = metrics.generalized_energy_distance(samples[:, :s], graders)
    columns[f"{prefix}ged_{s}"] = terms.ged
    if s == max(counts):
      columns[f"{prefix}cross"] = terms.cross
      columns[f"{prefix}samples_diversity"] = terms.samples_diversity
      columns[f"{prefix}graders_diversity"] = terms.graders_diversity
  return columns


def _true_samples(candidates, probabilities, rng, num_samples):
  """[B, S, H, W] masks drawn from each image's known grader distribution."""
  choice = jax.random.categorical(rng, jnp.log(probabilities),
                                  shape=(num_samples, len(probabilities)))
  return jnp.take_along_axis(candidates, choice.T[:, :, None, None], axis=1)


def _with_spread(per_image: dict) -> dict:
  """Per-image values and their spread over images under "<name>_std"."""
  return {**per_image, **{f"{k}_std": float(np.std(v)) for k, v in per_image.items()}}


# The config's default `evals`: GED, diversity and Hungarian IoU of samples;
# per-pixel CE and -log p(y | x) averaged over the graders; the pictures.
EVALS = ("samples", "likelihoods", "panel", "calibration", "modes")


def context(config, model) -> evaluators.Context:
  kind = evaluators.DETERMINISTIC if config.model == "unet" else evaluators.CVAE
  return evaluators.Context(config, model, kind)


def own_evaluators(config, model) -> dict:
  """The figures of the module docstring (per-image means, and their spread
  under "<name>_std"), then panel.png."""
  size, ev = config.image_size, config.eval
  counts = tuple(ev.ged_samples)
  most = max(ev.num_samples, ev.hungarian_samples)
  ideal = config.dataset == "mnist_ambiguous"  # Its grader distribution is known.

  def sampled(params, arrays, rng):
    """GED columns and (for the Hungarian matching) the first samples."""
    logits = sample_logits(config, model, params, arrays["image"], rng, most)
    samples = jnp.moveaxis(_as_masks(logits, size), 0, 1)  # [B, S, H, W]
    graders = arrays["masks"] > 0.5
    columns = _ged_columns("", samples, graders, counts)
    if ideal:
      truth = _true_samples(arrays["candidates"], arrays["probabilities"],
                            jax.random.fold_in(rng, 1), most)
      columns.update(_ged_columns("ideal_", truth, graders, counts))
      for s in counts:
        columns[f"floor_ged_{s}"] = metrics.expected_ged_of_distribution(
            arrays["candidates"], arrays["probabilities"], graders, s).ged
      columns["ideal_samples"] = truth[:, :ev.hungarian_samples]
    columns["samples"] = samples[:, :ev.hungarian_samples]
    return columns

  def likelihoods(params, arrays, rng):
    """[B, 2]: per-pixel CE of the mean prediction, -log p(y | x) per image;
    both means over the graders."""
    graders = jnp.moveaxis(arrays["masks"], 1, 0)  # [G, B, H, W]
    images = arrays["image"]
    if config.model == "unet":
      logits = model.apply(params, images).logits
    else:
      at_mean, features = sampling.prior_predictive(model, params, images, None,
                                                    with_mean=True)
      logits = at_mean.logits
    targets = graders.reshape(*graders.shape[:2], -1)
    ce = -distributions.bernoulli_log_likelihood(logits, targets) / size**2
    if config.model == "unet":
      nll = ce.mean(0) * size**2
    else:
      nll = cvae_negative_log_likelihood(model, params, images, arrays["masks"], rng,
                                         ev.num_samples, ev.chunk_size, features)
    columns = [ce.mean(0), nll]
    if ideal:
      columns.append(true_negative_log_likelihood(
          arrays["candidates"], arrays["probabilities"], arrays["masks"]))
    return jnp.stack(columns, -1)

  def arrays_of(test):
    return {k: test[k] for k in ("image", "masks", "candidates", "probabilities")
            if k in test}

  def sample_figures(params, test, rng, workdir):
    columns = evaluators.measured("samples: GED, diversity, Hungarian IoU",
                              "images", sampled, params, arrays_of(test), rng,
                              ev.batch_size, as_dict=True)
    per_image = {k: v for k, v in columns.items() if not k.endswith("samples")}
    per_image["hungarian_iou"] = metrics.hungarian_matched_iou(
        columns["samples"], test["masks"] > 0.5)
    if ideal:
      per_image["ideal_hungarian_iou"] = metrics.hungarian_matched_iou(
          columns["ideal_samples"], test["masks"] > 0.5)
    return _with_spread(per_image)

  def likelihood_figures(params, test, rng, workdir):
    label = (f"per-pixel CE and -log p(y|x)"
             f"{'' if config.model == 'unet' else f' (IS, S={ev.num_samples})'}")
    values = evaluators.measured(label, "images", likelihoods, params, arrays_of(test),
                             rng, ev.batch_size)
    per_image = {"ce_per_pixel": values[:, 0], "nll": values[:, 1]}
    if ideal:
      per_image["ideal_nll"] = values[:, 2]
    return _with_spread(per_image)

  def calibrated(params, arrays, rng):
    """Per image: the ECE of the pixel-wise marginal of S samples, PHiSeg's
    S_NCC (NaN where the samples are identical), the mean Dice of the
    prediction at z = E[z | x] with each grader; the same for S draws of the
    true distribution where it is known."""
    logits = sample_logits(config, model, params, arrays["image"], rng, ev.num_samples)
    samples = jnp.moveaxis(_as_masks(logits, size), 0, 1)  # [B, S, H, W]
    graders = arrays["masks"] > 0.5
    if config.model == "unet":
      at_mean = logits[0]
    else:
      at_mean = sampling.prior_predictive(model, params, arrays["image"], None,
                                          with_mean=True)[0].logits
    by_grader = metrics.dice(_as_masks(at_mean, size)[:, None], graders)  # [B, G]
    columns = {"ece": metrics.expected_calibration_error(samples, graders),
               "variance_ncc": metrics.variance_ncc(samples, graders),
               "dice": jnp.mean(by_grader, axis=-1),
               **{f"dice_grader_{g}": by_grader[:, g]
                  for g in range(graders.shape[1])}}
    if ideal:
      truth = _true_samples(arrays["candidates"], arrays["probabilities"],
                            jax.random.fold_in(rng, 1), ev.num_samples)
      columns["ideal_ece"] = metrics.expected_calibration_error(truth, graders)
      columns["ideal_variance_ncc"] = metrics.variance_ncc(truth, graders)
    return columns

  def calibration_figures(params, test, rng, workdir):
    columns = evaluators.measured(
        f"calibration: ECE, S_NCC, Dice (S={ev.num_samples})", "images", calibrated,
        params, arrays_of(test), rng, ev.batch_size, as_dict=True)
    figures = {}
    for name, values in columns.items():
      values = np.asarray(values)
      if name.endswith("variance_ncc"):  # NaN: no uncertainty to correlate.
        defined = ~np.isnan(values)
        figures[f"{name}_defined"] = float(np.mean(defined))
        if defined.any():  # (Never for the U-Net: its samples are one.)
          figures[name] = float(np.mean(values[defined]))
          figures[f"{name}_std"] = float(np.std(values[defined]))
      else:
        figures[name], figures[f"{name}_std"] = values, float(np.std(values))
    return figures

  def mode_columns(params, arrays, rng):
    """Per image [B, K + 1]: the share of S = eval.num_samples samples
    assigned to each candidate (the last: to none), the same for S draws of
    the true distribution, and the true shares."""
    logits = sample_logits(config, model, params, arrays["image"], rng, ev.num_samples)
    samples = jnp.moveaxis(_as_masks(logits, size), 0, 1)  # [B, S, H, W]
    candidates, probabilities = arrays["candidates"], arrays["probabilities"]
    truth = _true_samples(candidates, probabilities, jax.random.fold_in(rng, 1),
                          ev.num_samples)
    threshold = ev.mode_iou_threshold
    return {"sampled": metrics.mode_frequencies(samples, candidates, threshold),
            "ideal": metrics.mode_frequencies(truth, candidates, threshold),
            "true": metrics.true_mode_frequencies(candidates, probabilities, threshold)}

  def mode_figures(params, test, rng, workdir):
    """Kohl et al.'s mode calibration, exact on the offline set; modes.png."""
    if not ideal:  # Only the offline set knows its candidates.
      return {}
    from cvae_jax.data.mnist_ambiguous import CANDIDATE_NAMES  # pylint: disable=g-import-not-at-top
    columns = evaluators.measured(
        f"modes: frequencies of the candidates (S={ev.num_samples}, IoU >= "
        f"{ev.mode_iou_threshold})", "images", mode_columns, params,
        arrays_of(test), rng, ev.batch_size, as_dict=True)
    true = np.asarray(columns["true"])
    figures, means = {}, {"true": true.mean(0)}
    for prefix, label in (("", "model"), ("ideal_", "true distribution, sampled")):
      frequencies = np.asarray(columns["sampled" if prefix == "" else "ideal"])
      tv = np.asarray(metrics.total_variation(frequencies, true))
      figures.update({f"{prefix}mode_tv": tv, f"{prefix}mode_tv_std": float(np.std(tv)),
                      f"{prefix}mode_tv_pooled": float(metrics.total_variation(
                          frequencies.mean(0), true.mean(0))),
                      f"{prefix}unmatched": frequencies[:, -1],
                      f"{prefix}unmatched_std": float(np.std(frequencies[:, -1]))})
      means[label] = frequencies.mean(0)
    names = [*CANDIDATE_NAMES, "unmatched"]
    for k, name in enumerate(names):
      slug = name.replace(" ", "_")
      figures[f"mode_frequency_{slug}"] = float(means["model"][k])
      figures[f"true_mode_frequency_{slug}"] = float(means["true"][k])
    plotting.save_bar_chart(names, {label: means[label] for label in (
        "model", "true distribution, sampled", "true")}, workdir / "modes.png",
        "share of samples (mean over images)",
        f"{config.model}: samples assigned to the nearest candidate "
        f"(IoU >= {ev.mode_iou_threshold})")
    return figures

  return {
      "modes": evaluators.Evaluator(
          "modes", ("eval.num_samples", "eval.mode_iou_threshold"), mode_figures),
      "calibration": evaluators.Evaluator(
          "calibration", ("eval.num_samples",), calibration_figures),
      "samples": evaluators.Evaluator(
          "samples", ("eval.num_samples", "eval.hungarian_samples",
                      "eval.ged_samples"), sample_figures),
      "likelihoods": evaluators.Evaluator(
          "likelihoods", ("eval.num_samples", "eval.chunk_size"),
          likelihood_figures),
      "panel": evaluators.picture(
          "panel", ("eval.figure_images", "eval.figure_samples"),
          lambda params, test, rng: panel(config, model, params, test, rng),
          "panel.png")}


def panel(config, model, params, test: dict, rng: jax.Array) -> np.ndarray:
  """[rows, images, H, W] in [0, 1]: the image, its G graders' masks, then
  `figure_samples` model samples z ~ p(z | x) (probabilities)."""
  count = config.eval.figure_images
  images = jnp.asarray(test["image"][:count])
  logits = sample_logits(config, model, params, images, rng,
                         config.eval.figure_samples)
  samples = np.asarray(jax.nn.sigmoid(logits)).reshape(
      -1, count, config.image_size, config.image_size)
  return np.concatenate([test["image"][None, :count, ..., 0],
                         np.moveaxis(test["masks"][:count], 1, 0), samples])


def validation_loss_fn(config, model):
  """The first grader, fixed z draws: the early-stopping loss."""
  per_example = per_example_objective(config, model)
  return lambda params, arrays, rng: per_example(
      params, objective_batch(arrays["image"], arrays["masks"][:, 0]), rng)[0]


def epoch_evaluation(config, model, splits, rng):
  """The trainer's per-epoch hook, with the same draws every epoch (so
  epochs compare fairly): validation_loss (`validation_loss_fn` over the
  validation split) and, over its first eval.validation_images images with
  S = eval.validation_samples: validation_ged (d = 1 - IoU) and
  validation_nll (-log p(y_g | x), mean over graders; exact for the U-Net,
  importance-sampled for the CVAEs), in nats per image. On the offline set
  also the floor's GED and the true distribution's NLL on those images
  (constants: the learning curves' targets). Either figure can be the
  early-stopping metric (PHiSeg selects by validation GED)."""
  ev, size = config.eval, config.image_size
  loss = evaluation.validation_loss_evaluator(
      validation_loss_fn(config, model), splits["validation"], rng, ev.batch_size)
  count = ev.validation_images or len(splits["validation"]["image"])
  subset = {k: v[:count] for k, v in splits["validation"].items()
            if k in ("image", "masks")}

  def figures(params, arrays, rng):
    logits = sample_logits(config, model, params, arrays["image"], rng,
                           ev.validation_samples)
    samples = jnp.moveaxis(_as_masks(logits, size), 0, 1)  # [B, S, H, W]
    ged = metrics.generalized_energy_distance(samples, arrays["masks"] > 0.5).ged
    if config.model == "unet":
      targets = arrays["masks"].reshape(*arrays["masks"].shape[:2], -1)
      nll = -distributions.bernoulli_log_likelihood(logits[0][:, None], targets).mean(-1)
    else:
      nll = cvae_negative_log_likelihood(
          model, params, arrays["image"], arrays["masks"], jax.random.fold_in(rng, 1),
          ev.validation_samples, ev.chunk_size)
    return {"ged": ged, "nll": nll}

  targets = {}
  if config.dataset == "mnist_ambiguous":
    validation = splits["validation"]
    graders = validation["masks"][:count] > 0.5
    candidates = validation["candidates"][:count]
    targets["validation_floor_ged"] = float(np.mean(metrics.expected_ged_of_distribution(
        candidates, validation["probabilities"][:count], graders,
        ev.validation_samples).ged))
    targets["validation_ideal_nll"] = float(np.mean(true_negative_log_likelihood(
        candidates, validation["probabilities"][:count], graders)))

  def evaluate(state, epoch: int) -> dict[str, float]:
    values = evaluation.map_dict_over_batches(
        figures, state.params, subset, jax.random.fold_in(rng, 1), ev.batch_size)
    return {**loss(state, epoch), "validation_ged": float(np.mean(values["ged"])),
            "validation_nll": float(np.mean(values["nll"])), **targets}
  return evaluate


def report_eval(epoch: int, values: dict) -> str:
  line = (f"epoch {epoch} validation loss {values['validation_loss']:.4f} "
          f"nats/image, GED {values['validation_ged']:.4f}")
  if "validation_floor_ged" in values:
    line += f" (floor {values['validation_floor_ged']:.4f})"
  line += f", -log p(y|x) {values['validation_nll']:.3f}"
  if "validation_ideal_nll" in values:
    line += f" (ideal {values['validation_ideal_nll']:.3f})"
  return line


def summary_figures(test: dict) -> list[str]:
  return [k for k in test if not k.endswith("_std") and (
      k.startswith(("ged_", "floor_ged_")) or k in (
          "samples_diversity", "hungarian_iou", "ce_per_pixel", "nll",
          "mode_tv_pooled", "unmatched"))]


def is_cvae(config) -> bool:
  return config.model != "unet"


def make_init_batch(config, example: dict) -> dict:
  return objective_batch(example["image"], example["masks"][:, 0])


def header(config, test: dict) -> dict:
  return {"model": config.model, "dataset": config.dataset}


def loading_message(config) -> str:
  return f"loading {config.dataset}..."


UNITS = {"ged_*, cross, *_diversity": "d = 1 - IoU",
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
         "dice": "mean Dice of the prediction at z = E[z|x] with each grader",
         "ce_per_pixel": "nats per pixel", "nll": "nats per image"}
TEST_STREAMS = 4
TRAINING_KEYS = ("image", "masks")
TASK = runner.Task.from_namespace("prob_unet", globals())
train_and_evaluate = TASK.train_and_evaluate
