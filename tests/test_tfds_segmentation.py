"""The TFDS segmentation loaders, offline.

The datasets are not prepared here and cannot be downloaded, so the pipeline
runs under `tfds.testing.mock_data(policy=MockPolicy.USE_CODE)`: the dataset's
own code gives the features, TFDS generates random examples (images and masks
of random sizes 5..49, values 0..max_value-1), download_and_prepare is a no-op.
The foreground rules are checked on hand-made masks.
"""

import chex
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from cvae_jax.data import tfds_segmentation as seg
from cvae_jax.errors import ConfigError, UserError

SIZE = 16


def _mock(num_examples, max_value=None):
  return tfds.testing.mock_data(num_examples=num_examples, max_value=max_value,
                                policy=tfds.testing.MockPolicy.USE_CODE)


def _check_example(example):
  chex.assert_shape(example["image"], (SIZE, SIZE, 3))
  chex.assert_shape(example["masks"], (1, SIZE, SIZE))
  chex.assert_type([example["image"], example["masks"]], np.float32)
  assert 0.0 <= example["image"].min() and example["image"].max() <= 1.0
  assert set(np.unique(example["masks"])) <= {0.0, 1.0}


@pytest.mark.parametrize("name", seg.DATASETS)
def test_mocked_stream_has_documented_shapes_and_ranges(name, tmp_path):
  with _mock(num_examples=3):
    ds = seg.segmentation_dataset(name, "train[:90%]", tmp_path, SIZE)
    assert ds.element_spec["image"].shape == (SIZE, SIZE, 3)
    assert ds.element_spec["masks"].shape == (1, SIZE, SIZE)
    examples = list(ds.as_numpy_iterator())
  assert len(examples) == 3
  for example in examples:
    _check_example(example)


@pytest.mark.parametrize("name, max_value, foreground", [
    ("caltech_birds2011", 128, 0.0),  # Grey levels 0..127: all background.
    ("oxford_iiit_pet", 2, 1.0),  # Values 0, 1, never 2: all foreground.
])
def test_mocked_stream_applies_the_foreground_rule(name, max_value, foreground,
                                                   tmp_path):
  with _mock(num_examples=2, max_value=max_value):
    arrays = seg.load_segmentation_arrays(name, "test", tmp_path, SIZE)
  np.testing.assert_array_equal(arrays["masks"], foreground)


def test_cub_foreground_is_grey_level_above_127():
  grey = np.array([[0, 1, 126, 127], [128, 129, 200, 255]], np.uint8)[..., None]
  mask = seg.foreground_mask("caltech_birds2011", grey).numpy()
  assert mask.dtype == np.float32
  np.testing.assert_array_equal(mask[..., 0], [[0, 0, 0, 0], [1, 1, 1, 1]])


def test_pet_foreground_is_pet_or_border():
  trimap = np.array([[1, 2, 3], [3, 2, 1]], np.uint8)[..., None]  # 1 pet, 2 bg.
  mask = seg.foreground_mask("oxford_iiit_pet", trimap).numpy()
  np.testing.assert_array_equal(mask[..., 0], [[1, 0, 1], [1, 0, 1]])


def test_hand_made_example_grey_image_and_nearest_mask():
  grey = tf.fill([4, 8, 1], tf.constant(255, tf.uint8))
  trimap = np.full([4, 8, 1], 2, np.uint8)
  trimap[:, :4] = 1  # Left half pet, right half background.
  to_example = seg._to_example  # pylint: disable=protected-access
  example = to_example("oxford_iiit_pet", 4,
                       {"image": grey, "segmentation_mask": trimap})
  chex.assert_shape(example["image"], (4, 4, 3))
  np.testing.assert_allclose(example["image"].numpy(), 1.0)
  np.testing.assert_array_equal(example["masks"].numpy()[0],
                                [[1, 1, 0, 0]] * 4)


def test_load_arrays_takes_the_first_max_examples_in_stream_order(tmp_path):
  name = "oxford_iiit_pet"
  with _mock(num_examples=5):
    first3 = seg.load_segmentation_arrays(name, "train", tmp_path, SIZE,
                                          max_examples=3)
    whole = seg.load_segmentation_arrays(name, "train", tmp_path, SIZE)
  chex.assert_shape(first3["image"], (3, SIZE, SIZE, 3))
  chex.assert_shape(first3["masks"], (3, 1, SIZE, SIZE))
  chex.assert_shape(whole["image"], (5, SIZE, SIZE, 3))
  chex.assert_shape(whole["masks"], (5, 1, SIZE, SIZE))
  for key in ("image", "masks"):  # Deterministic: same examples, same order.
    np.testing.assert_array_equal(first3[key], whole[key][:3])


def test_validation_split_strings():
  for name in seg.DATASETS:
    assert seg.validation_split(name, 0.1) == ("train[:90%]", "train[90%:]",
                                               "test")
  assert seg.validation_split("oxford_iiit_pet", 0.25)[:2] == ("train[:75%]",
                                                               "train[75%:]")
  assert seg.validation_split("caltech_birds2011", 1 / 3)[1] == (
      "train[66.666667%:]")
  for bad in (0.0, 1.0, -0.1, 1.5, True, "0.1"):
    with pytest.raises(ConfigError, match="validation_fraction"):
      seg.validation_split("oxford_iiit_pet", bad)


def test_unknown_name_is_a_config_error(tmp_path):
  for call in (lambda: seg.segmentation_dataset("cub", "train", tmp_path, 8),
               lambda: seg.load_segmentation_arrays("cub", "test", tmp_path, 8),
               lambda: seg.validation_split("cub", 0.1),
               lambda: seg.foreground_mask("cub", np.zeros([2, 2, 1]))):
    with pytest.raises(ConfigError, match="caltech_birds2011, oxford_iiit_pet; "
                       "set --config.dataset"):
      call()


def test_bad_sizes_are_config_errors(tmp_path):
  for bad in (0, -1, 8.0, True):
    with pytest.raises(ConfigError, match="image_size"):
      seg.segmentation_dataset("oxford_iiit_pet", "train", tmp_path, bad)
  with pytest.raises(ConfigError, match="max_examples"):
    seg.load_segmentation_arrays("oxford_iiit_pet", "train", tmp_path, 8,
                                 max_examples=0)


@pytest.mark.parametrize("name", seg.DATASETS)
def test_unprepared_dataset_without_download_says_what_to_run(name, tmp_path):
  data_dir = tmp_path / "empty"
  with pytest.raises(UserError) as info:
    seg.segmentation_dataset(name, "train", data_dir, SIZE, download=False)
  message = str(info.value)
  assert "\n" not in message
  assert name in message and str(data_dir) in message
  assert "Colab" in message
  assert f"tfds build {name} --data_dir={data_dir}" in message
