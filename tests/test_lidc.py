"""The LIDC loader on small generated pickles of the real file's structure.

`helpers.write_lidc_file` writes what data_lidc.pickle holds: a dict of crops,
key `LIDC-IDRI-NNNN_<series>_slice<k>` -> {"image": float32 [S, S] in [0, 1],
"masks": a list of 4 uint8 [S, S] masks (random blobs, some empty),
"series_uid": str}.
"""

import pickle

import chex
import numpy as np
import pytest

from cvae_jax.data import lidc
from cvae_jax.errors import ConfigError, UserError
from helpers import LIDC_GRADERS as GRADERS
from helpers import LIDC_SIZE as SIZE
from helpers import make_lidc_records, write_lidc_file


@pytest.fixture(name="pickle_path")
def fixture_pickle_path(tmp_path):
  return write_lidc_file(tmp_path / "data_lidc.pickle")


def _patients_per_example(arrays_ids):
  return {name: ids["patient"] for name, ids in arrays_ids.items()}


def test_shapes_dtypes_and_values(pickle_path):
  records = make_lidc_records()
  splits = lidc.load_lidc_splits(pickle_path)
  assert set(splits) == set(lidc.SPLITS)
  total = 0
  for arrays in splits.values():
    n = len(arrays["image"])
    assert n > 0
    total += n
    chex.assert_shape(arrays["image"], (n, SIZE, SIZE, 1))
    chex.assert_shape(arrays["masks"], (n, GRADERS, SIZE, SIZE))
    chex.assert_type([arrays["image"], arrays["masks"]], np.float32)
    assert set(np.unique(arrays["masks"])) <= {0.0, 1.0}
  assert total == len(records)
  # Images are kept exactly as stored: the same multiset of pixel values.
  stored = np.sort(np.concatenate([r["image"].ravel() for r in records.values()]))
  loaded = np.sort(np.concatenate([a["image"].ravel() for a in splits.values()]))
  np.testing.assert_array_equal(loaded, stored)


def test_examples_match_their_crops(pickle_path):
  records = make_lidc_records()
  arrays, ids = lidc.split_arrays(lidc.read_lidc_records(pickle_path))
  for name in lidc.SPLITS:
    for i, key in enumerate(ids[name]["key"]):
      np.testing.assert_array_equal(arrays[name]["image"][i, ..., 0],
                                    records[key]["image"])
      np.testing.assert_array_equal(arrays[name]["masks"][i],
                                    np.stack(records[key]["masks"]))
      assert ids[name]["patient"][i] == key.split("_")[0]
  # The loader gives the same arrays as split_arrays.
  loaded = lidc.load_lidc_splits(pickle_path)
  chex.assert_trees_all_equal(loaded, arrays)


def test_split_is_by_patient_disjoint_and_covering(pickle_path):
  records = lidc.read_lidc_records(pickle_path)
  patients = lidc.split_patients(records, (0.5, 0.25, 0.25), seed=3)
  groups = [set(patients[name]) for name in lidc.SPLITS]
  assert all(groups)
  assert not (groups[0] & groups[1] or groups[0] & groups[2]
              or groups[1] & groups[2])
  assert set().union(*groups) == {f"LIDC-IDRI-{p:04d}" for p in range(1, 7)}
  assert [len(g) for g in groups] == [3, 2, 1]  # Cumulative rounding of 6.
  _, ids = lidc.split_arrays(records, (0.5, 0.25, 0.25), seed=3)
  keys = [k for name in lidc.SPLITS for k in ids[name]["key"]]
  assert sorted(keys) == sorted(records)  # Every crop exactly once.
  for name in lidc.SPLITS:  # Every crop in its patient's split.
    assert set(ids[name]["patient"]) == set(patients[name])


def test_deterministic_under_seed_and_different_under_another(pickle_path):
  records = lidc.read_lidc_records(pickle_path)
  first = lidc.split_patients(records, seed=0)
  assert lidc.split_patients(records, seed=0) == first
  assert any(lidc.split_patients(records, seed=s) != first for s in (1, 2, 3))
  a = lidc.load_lidc_splits(pickle_path, seed=0)
  chex.assert_trees_all_equal(a, lidc.load_lidc_splits(pickle_path, seed=0))


def test_each_positive_split_gets_a_patient_and_zero_fractions_none():
  records = make_lidc_records(num_patients=3)
  patients = lidc.split_patients(records, (0.98, 0.01, 0.01))
  assert [len(patients[name]) for name in lidc.SPLITS] == [1, 1, 1]
  patients = lidc.split_patients(records, (0.5, 0.5, 0.0))
  assert len(patients["test"]) == 0 and len(patients["train"]) >= 1
  arrays, _ = lidc.split_arrays(records, (0.5, 0.5, 0.0))
  chex.assert_shape(arrays["test"]["image"], (0, SIZE, SIZE, 1))
  chex.assert_shape(arrays["test"]["masks"], (0, GRADERS, SIZE, SIZE))


def test_patient_falls_back_to_series_uid():
  records = {"crop_a": {"series_uid": "1.2.3"}, "crop_b": {"series_uid": "1.2.3"},
             "crop_c": {"series_uid": "4.5.6"}}
  assert lidc.patient_of("crop_a", records["crop_a"]) == "1.2.3"
  assert lidc.patient_of("x_LIDC-IDRI-0042_s1", {"series_uid": "9"}) == (
      "LIDC-IDRI-0042")
  with pytest.raises(UserError, match="2 patient"):  # Two series, 3 splits.
    lidc.split_patients(records)


def test_max_examples_shortens_each_split(pickle_path):
  full = lidc.load_lidc_splits(pickle_path)
  short = lidc.load_lidc_splits(pickle_path, max_examples=1)
  for name in lidc.SPLITS:
    chex.assert_trees_all_equal(short[name],
                                {k: v[:1] for k, v in full[name].items()})
  some = lidc.load_lidc_splits(pickle_path, max_examples={"train": 2})
  assert len(some["train"]["image"]) == 2
  assert len(some["test"]["image"]) == len(full["test"]["image"])
  with pytest.raises(ConfigError, match="max_examples"):
    lidc.load_lidc_splits(pickle_path, max_examples=0)


def test_folder_of_chunks_is_merged(tmp_path):
  records = make_lidc_records()
  keys = sorted(records)
  folder = tmp_path / "data"
  folder.mkdir()
  write_lidc_file(folder / "data_lidc_0.pickle", {k: records[k] for k in keys[:7]})
  write_lidc_file(folder / "data_lidc_1.pickle", {k: records[k] for k in keys[7:]})
  (folder / "README.txt").write_text("not a chunk")
  write_lidc_file(tmp_path / "whole.pickle", records)
  chex.assert_trees_all_equal(lidc.load_lidc_splits(folder),
                              lidc.load_lidc_splits(tmp_path / "whole.pickle"))
  write_lidc_file(folder / "data_lidc_2.pickle", {keys[0]: records[keys[0]]})
  with pytest.raises(UserError, match=f"crop '{keys[0]}' is in both"):
    lidc.read_lidc_records(folder)


class _RunsCode:
  """Unpickled by calling print: a file that runs code when loaded."""

  def __reduce__(self):
    return print, ("this pickle ran code",)


def _crop(size=SIZE, graders=GRADERS):
  return {"image": np.zeros((size, size), np.float32),
          "masks": [np.zeros((size, size), np.uint8)] * graders,
          "series_uid": "1.2.3"}


def _bad_file(tmp_path, payload, raw=False):
  path = tmp_path / "bad.pickle"
  if raw:
    path.write_bytes(payload)
  else:
    with open(path, "wb") as f:
      pickle.dump(payload, f)
  return path


@pytest.mark.parametrize("payload, raw, fragment", [
    (b"this is not a pickle", True, "is not a readable LIDC pickle"),
    (pickle.dumps(make_lidc_records(num_patients=1))[:-50], True,
     "is not a readable LIDC pickle"),  # Truncated download.
    (pickle.dumps({"k": _RunsCode()}), True,
     "holds builtins.print, not only arrays and strings"),
    ([_crop()], False, "holds a list, not a dict of crops"),
    ({}, False, "holds no crops"),
    ({"LIDC-IDRI-0001_a": [1, 2]}, False, "crop 'LIDC-IDRI-0001_a' in .* is a list"),
    ({"LIDC-IDRI-0001_a": {"image": np.zeros((4, 4)), "series_uid": "1"}},
     False, "crop 'LIDC-IDRI-0001_a' in .* has no masks"),
    ({"LIDC-IDRI-0001_a": {"masks": [np.zeros((4, 4))]}}, False,
     "crop 'LIDC-IDRI-0001_a' in .* has no image, series_uid"),
    ({"LIDC-IDRI-0001_a": dict(_crop(), masks=[np.zeros((8, 8))] * 4)}, False,
     "crop 'LIDC-IDRI-0001_a' in .* mask 0 has shape \\(8, 8\\), the image"),
    ({"LIDC-IDRI-0001_a": dict(_crop(), masks=np.zeros((4, 8, 8)))}, False,
     "crop 'LIDC-IDRI-0001_a' in .* masks have shape \\(4, 8, 8\\)"),
    ({"LIDC-IDRI-0001_a": _crop(), "LIDC-IDRI-0002_b": _crop(graders=3)},
     False, "crop 'LIDC-IDRI-0002_b' .* has 3 masks but crop "
     "'LIDC-IDRI-0001_a' has 4"),
    ({"LIDC-IDRI-0001_a": _crop(), "LIDC-IDRI-0002_b": _crop(size=8)},
     False, "crop 'LIDC-IDRI-0002_b' .* has a 8x8 image but crop "
     "'LIDC-IDRI-0001_a' a 16x16 one"),
    ({"LIDC-IDRI-0001_a": dict(_crop(), image=np.full((SIZE, SIZE), np.nan))},
     False, "NaN"),
])
def test_bad_files_are_one_line_user_errors(tmp_path, payload, raw, fragment):
  path = _bad_file(tmp_path, payload, raw)
  with pytest.raises(UserError, match=fragment) as info:
    lidc.load_lidc_splits(path)
  assert "\n" not in str(info.value)


def test_missing_file_says_where_it_comes_from(tmp_path):
  with pytest.raises(UserError, match="not found") as info:
    lidc.load_lidc_splits(tmp_path / "data_lidc.pickle")
  message = str(info.value)
  assert "stefanknegt/Probabilistic-Unet-Pytorch" in message
  assert "--config.data.lidc_path=" in message
  with pytest.raises(UserError, match="holds no LIDC data; .* takes "
                     "data_lidc.pickle .* .hdf5/.h5 file, or DeepMind's PNG"):
    lidc.load_lidc_splits(tmp_path)


@pytest.mark.parametrize("fractions", [
    (0.7, 0.2, 0.2), (1.2, -0.1, -0.1), (0.5, 0.5), (0.7, 0.15, float("nan")),
    "abc"])
def test_bad_fractions_are_config_errors(pickle_path, fractions):
  with pytest.raises(ConfigError, match="fractions must be 3 non-negative"):
    lidc.load_lidc_splits(pickle_path, fractions=fractions)


def test_python2_style_protocol_and_bool_masks_load(tmp_path):
  records = make_lidc_records(num_patients=3)
  for record in records.values():
    record["masks"] = np.stack(record["masks"]).astype(bool)  # An array, bool.
    record["image"] = record["image"].astype(np.float64)
  path = tmp_path / "p2.pickle"
  with open(path, "wb") as f:
    pickle.dump(records, f, protocol=2)
  arrays = lidc.load_lidc_splits(path)
  chex.assert_type(arrays["train"]["image"], np.float32)
  assert sum(len(a["masks"]) for a in arrays.values()) == len(records)
