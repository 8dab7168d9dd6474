"""The train / validation / test arrays an example's config names, by data
interface, and the offline sets' specs from a config.

Each `*_splits(config)` dispatches on `config.dataset` between the offline
set built from real MNIST and the datasets that need a download, and returns
{"train", "validation", "test"} -> {name: numpy array}. `config.data`
holds the set's settings and the example limits (`max_train_examples`,
`max_eval_examples`; 0: all). The loaders are imported when called, so the
spec functions (used to check a config) import no TensorFlow.
"""

from pathlib import Path

from cvae_jax.errors import UserError

__all__ = ["segmentation_canvas_spec", "box_canvas_spec", "ambiguity_spec",
           "segmentation_splits", "box_splits", "check_lidc_settings",
           "ambiguous_splits", "ambiguous_split_record"]


def _limits(config) -> dict:
  return {"train": config.data.max_train_examples,
          "validation": config.data.max_eval_examples,
          "test": config.data.max_eval_examples}


def segmentation_canvas_spec(config):
  """`mnist_segmentation.CanvasSpec` from config.image_size, config.data and
  config.occlusion."""
  from cvae_jax.data.mnist_segmentation import CanvasSpec  # pylint: disable=g-import-not-at-top
  return CanvasSpec(size=config.image_size,
                    num_fragments=config.data.num_fragments,
                    fragment_size=config.data.fragment_size,
                    noise_std=config.data.noise_std,
                    occlusion_blocks=config.occlusion.blocks,
                    occlusion_size=config.occlusion.size)


def box_canvas_spec(config):
  """`mnist_boxes.CanvasSpec` from config.image_size and config.data."""
  from cvae_jax.data.mnist_boxes import CanvasSpec  # pylint: disable=g-import-not-at-top
  return CanvasSpec(size=config.image_size, min_digits=config.data.min_digits,
                    max_digits=config.data.max_digits,
                    max_box_iou=config.data.max_box_iou)


def ambiguity_spec(config):
  """`mnist_ambiguous.AmbiguitySpec` from config.image_size and config.data."""
  from cvae_jax.data.mnist_ambiguous import AmbiguitySpec  # pylint: disable=g-import-not-at-top
  return AmbiguitySpec(
      size=config.image_size, digit_size=config.data.digit_size,
      num_graders=config.data.num_graders,
      structure_probabilities=tuple(config.data.structure_probabilities),
      loose_probability=config.data.loose_probability,
      ambiguity=config.data.ambiguity)


def segmentation_splits(config) -> dict:
  """{"image" [N, H, W, C], "masks" [N, G, H, W], ...}: the offline
  `mnist_segmentation` canvases or a TFDS set (`caltech_birds2011`,
  `oxford_iiit_pet`) resized to config.image_size."""
  # pylint: disable=g-import-not-at-top
  limits = _limits(config)
  if config.dataset == "mnist_segmentation":
    from cvae_jax.data import mnist, mnist_segmentation
    mnist.prepare_mnist(config.data_dir, download=config.download)
    return mnist_segmentation.load_segmentation_splits(
        config.data_dir, segmentation_canvas_spec(config), config.validation_size,
        config.data.seed, limits)
  from cvae_jax.data import tfds_segmentation
  names = tfds_segmentation.validation_split(config.dataset,
                                             config.validation_fraction)
  return {split: tfds_segmentation.load_segmentation_arrays(
      config.dataset, name, config.data_dir, config.image_size,
      download=config.download, max_examples=limits[split] or None)
          for split, name in zip(("train", "validation", "test"), names)}


def box_splits(config) -> dict:
  """{"image" [N, H, W, C], "boxes" [N, M, 4], "labels" [N, M], "query" [N]}:
  the offline `mnist_boxes` canvases or Pascal VOC (`voc/2007`)."""
  # pylint: disable=g-import-not-at-top
  limits = _limits(config)
  if config.dataset == "mnist_boxes":
    from cvae_jax.data import mnist, mnist_boxes
    mnist.prepare_mnist(config.data_dir, download=config.download)
    with mnist.unreadable_records_as_user_errors(config.data_dir):
      return mnist_boxes.load_box_splits(config.data_dir, box_canvas_spec(config),
                                         config.validation_size, config.data.seed,
                                         limits)
  from cvae_jax.data import tfds_boxes
  return {split: tfds_boxes.load_box_arrays(
      config.dataset, name, config.data_dir, config.image_size,
      config.data.max_digits, seed=config.data.seed, download=config.download,
      max_examples=limits[split] or None)
          for split, name in tfds_boxes.SPLITS.items()}


def check_lidc_settings(config) -> None:
  """UserError / ConfigError, reading no data, for dataset=lidc without
  config.data.lidc_path or with impossible config.data.lidc_fractions."""
  from cvae_jax.data import lidc  # pylint: disable=g-import-not-at-top
  if not config.data.lidc_path:
    raise UserError("dataset=lidc needs the preprocessed LIDC crops; pass "
                    "--config.data.lidc_path=/path/to/data_lidc.pickle (or "
                    "PHiSeg's .hdf5 file, or DeepMind's PNG crop folder; where "
                    "to get them: cvae_jax/data/lidc.py)")
  lidc.check_fractions(tuple(config.data.lidc_fractions))


def ambiguous_splits(config) -> dict:
  """{"image" [N, H, W, 1], "masks" [N, G, H, W], ...}: the offline
  `mnist_ambiguous` set (with its "candidates" and "probabilities") or the
  LIDC-IDRI crops at config.data.lidc_path (any form `lidc.detect_format`
  accepts). UserError when the images are not config.image_size square."""
  # pylint: disable=g-import-not-at-top
  limits = _limits(config)
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


def ambiguous_split_record(config) -> dict:
  """results.json's record of the split: {"lidc_split": `lidc.split_manifest`}
  for dataset=lidc (the one `ambiguous_splits` loaded), else {} (the offline
  set is drawn from config.data.seed)."""
  if config.dataset != "lidc":
    return {}
  from cvae_jax.data import lidc  # pylint: disable=g-import-not-at-top
  return {"lidc_split": lidc.lidc_split_manifest(
      config.data.lidc_path, tuple(config.data.lidc_fractions), config.data.seed)}
