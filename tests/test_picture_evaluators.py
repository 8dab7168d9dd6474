"""cvae_jax.evaluators.pictures: each picture evaluator writes its file, with
one row per prediction it promises, for a CVAE and for a net with no latent."""

import jax
import jax.numpy as jnp
from matplotlib import image as mpimg
import numpy as np
import pytest

from cvae_jax.evaluators import pictures
from cvae_jax.models import LabelCVAE
from cvae_jax.tasks import segmentation
from helpers import SEGMENTATION_SIZE, segmentation_arrays, tiny_segmentation_config

PADDING, SCALE = 2, 2  # plotting.tile_images and save_image_grid's defaults.


def _tiles(path, size: int) -> tuple[int, int]:
  """(rows, columns) of square size x size tiles in a saved image grid."""
  height, width = mpimg.imread(path).shape[:2]
  return ((height // SCALE - PADDING) // (size + PADDING),
          (width // SCALE - PADDING) // (size + PADDING))


def _segmentation_picture(model):
  given = lambda test: (test["image"], [test["image"][..., 0], test["masks"][:, 0]])
  square = lambda x, p: np.asarray(p).reshape(len(x), SEGMENTATION_SIZE,
                                              SEGMENTATION_SIZE)
  return pictures.make_baseline_and_samples(model, "panel", "panel.png", given,
                                            square, num_images=3, num_samples=2)


@pytest.mark.parametrize("model_kind, rows", [
    ("cvae", 2 + 1 + 1 + 2),   # given rows, baseline, E[z|x], 2 samples
    ("baseline", 2 + 1),       # given rows, the net's prediction
])
def test_baseline_and_samples_draws_a_row_per_prediction(tmp_path, model_kind,
                                                           rows):
  config = tiny_segmentation_config(model=model_kind, multiscale_levels=0)
  model = segmentation.make_model(config)
  arrays = {k: jnp.asarray(v) for k, v in segmentation_arrays().items()}
  batch = segmentation.evaluation_batch(config, arrays)
  params = (model.init(jax.random.PRNGKey(0), batch["target"], batch["condition"])
            if model_kind == "cvae" else model.init(jax.random.PRNGKey(0),
                                                    batch["condition"]))
  evaluator = _segmentation_picture(model)
  assert evaluator.stream == "pictures" and evaluator.name == "panel"
  assert evaluator.run(params, arrays, jax.random.PRNGKey(1), tmp_path) == {}
  assert _tiles(tmp_path / "panel.png", SEGMENTATION_SIZE) == (rows, 3)
  # Without a workdir nothing is drawn (a notebook's call).
  assert evaluator.run(params, arrays, jax.random.PRNGKey(1), None) == {}


def test_label_pictures_write_samples_and_reconstructions(tmp_path):
  model = LabelCVAE(num_pixels=16, num_classes=3, hidden_size=8, latent_size=2)
  labels = jnp.arange(5) % 3
  images = jax.random.uniform(jax.random.PRNGKey(0), (5, 16))
  params = model.init(jax.random.PRNGKey(1), images, labels)
  evaluator = pictures.make_label_pictures(model, num_classes=3, columns=4,
                                           image_shape=(4, 4), count=5)
  evaluator.run(params, {"target": images, "condition": labels},
                jax.random.PRNGKey(2), tmp_path)
  assert _tiles(tmp_path / "samples.png", 4) == (3, 4)  # A row per class.
  assert _tiles(tmp_path / "reconstructions.png", 4) == (2, 5)
