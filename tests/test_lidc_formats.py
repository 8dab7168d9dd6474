"""LIDC in the forms users have: PHiSeg's .hdf5 and DeepMind's PNG crops read
as the same arrays as the equivalent pickle, through the same patient split,
and the split's manifest.

The generated files follow the authors' writers: PHiSeg's
`data/lidc_data_loader.py` (groups train / val / test of images float64
[N, 128, 128] = image - 0.5, labels uint8 [N, 128, 128, 4], uids int64
hash(series_uid)) and DeepMind's `HPU_Net.ipynb` (180 x 180 grey PNGs,
<split>/images/<patient>/<name>.png and <split>/gt/<patient>/<name>_l<k>.png,
k = 0..3, the central 128 x 128 kept).
"""

import hashlib
import json
import pickle
import shutil

import chex
import h5py
import numpy as np
import pytest
from PIL import Image

from cvae_jax.data import lidc, lidc_hdf5, lidc_png, splits
from cvae_jax.errors import UserError
from cvae_jax.training import results as results_file
from helpers import make_lidc_records, tiny_prob_unet_config, write_lidc_file

PHISEG_SIZE = 128
PNG_SIZE = 180


def _pickle(path, records):
  """`records` ({key: image [H, W], masks [G, H, W], series_uid}) as a pickle."""
  with open(path, "wb") as f:
    pickle.dump({k: {"image": r["image"], "masks": list(r["masks"]),
                     "series_uid": r["series_uid"]} for k, r in records.items()}, f)
  return path


def write_phiseg_file(path, num_series=3, crops=2, seed=0):
  """A data_lidc.hdf5 as PHiSeg writes it: series split into train, val and
  test; returns (path, the equivalent pickle's records)."""
  rng = np.random.default_rng(seed)
  uids = rng.integers(-2**62, 2**62, num_series)  # Python's hash(): signed.
  groups = {"train": [], "val": [], "test": []}
  for s, uid in enumerate(uids):
    for _ in range(crops):
      image = rng.uniform(0, 1, (PHISEG_SIZE,) * 2).astype(np.float32)
      masks = (rng.random((4, PHISEG_SIZE, PHISEG_SIZE)) > 0.7).astype(np.uint8)
      groups[("train", "val", "test")[s % 3]].append((image, masks, uid))
  equivalent = {}
  with h5py.File(path, "w") as f:
    for name in ("train", "test", "val"):  # PHiSeg's order of writing.
      members = groups[name]
      group = f.create_group(name)
      group.create_dataset("uids", data=np.asarray([c[2] for c in members], np.int64))
      group.create_dataset("labels", data=np.asarray(
          [c[1].transpose(1, 2, 0) for c in members], np.uint8))
      group.create_dataset("images", data=np.asarray(
          [c[0].astype(float) - 0.5 for c in members], np.float64))
      for i, (image, masks, uid) in enumerate(members):
        equivalent[f"{name}/{i:06d}"] = {"image": image, "masks": masks,
                                         "series_uid": str(uid)}
  return path, equivalent


def _save_png(path, pixels):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path)


def write_deepmind_folder(root, num_patients=3, crops=2, seed=0, first_grader=0,
                          size=PNG_SIZE):
  """DeepMind's LIDC crops under `root`/{train,val,test}; returns (root,
  the equivalent pickle's records: pixels / 255, masks > 0, central 128)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size]
  equivalent = {}
  for p in range(1, num_patients + 1):
    patient = f"LIDC-IDRI-{p:04d}"
    split = root / ("train", "val", "test")[(p - 1) % 3]
    for c in range(crops):
      name = f"z{-100.5 + 2.5 * c}_c{c}"  # z-<z position>_c<crop>
      image = rng.integers(0, 256, (size, size), dtype=np.uint8)
      _save_png(split / "images" / patient / f"{name}.png", image)
      masks = []
      for k in range(4):
        centre, radius = rng.uniform(size / 3, 2 * size / 3, 2), rng.uniform(0, 20)
        mask = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius ** 2)
        _save_png(split / "gt" / patient / f"{name}_l{first_grader + k}.png",
                  mask.astype(np.uint8) * 255)
        masks.append(mask)
      crop = slice(26, -26) if size == PNG_SIZE else slice(None)
      equivalent[f"{patient}/{name}"] = {
          "image": (image / 255.0).astype(np.float32)[crop, crop],
          "masks": np.stack(masks)[:, crop, crop], "series_uid": patient}
  return root, equivalent


@pytest.fixture(name="phiseg")
def fixture_phiseg(tmp_path):
  return write_phiseg_file(tmp_path / "data_lidc.hdf5")


@pytest.fixture(name="deepmind")
def fixture_deepmind(tmp_path):
  return write_deepmind_folder(tmp_path / "lidc_crops")


def _assert_valid(splits_):
  for arrays in splits_.values():
    n = len(arrays["image"])
    chex.assert_shape(arrays["image"], (n, 128, 128, 1))
    chex.assert_shape(arrays["masks"], (n, 4, 128, 128))
    chex.assert_type([arrays["image"], arrays["masks"]], np.float32)
    assert set(np.unique(arrays["masks"])) <= {0.0, 1.0}


@pytest.mark.parametrize("form", ["phiseg", "deepmind"])
def test_each_form_reads_as_its_equivalent_pickle(request, tmp_path, form):
  path, equivalent = request.getfixturevalue(form)
  pickled = _pickle(tmp_path / "equivalent.pickle", equivalent)
  assert lidc.detect_format(path) == {"phiseg": "hdf5", "deepmind": "png"}[form]
  assert lidc.detect_format(pickled) == "pickle"
  loaded = lidc.load_lidc_splits(path, (0.34, 0.33, 0.33), seed=1)
  _assert_valid(loaded)
  chex.assert_trees_all_equal(
      loaded, lidc.load_lidc_splits(pickled, (0.34, 0.33, 0.33), seed=1))
  assert (lidc.lidc_split_manifest(path, (0.34, 0.33, 0.33), 1)
          == lidc.lidc_split_manifest(pickled, (0.34, 0.33, 0.33), 1))
  assert sum(len(a["image"]) for a in loaded.values()) == len(equivalent)


def test_phiseg_images_are_the_pickles_again_and_series_are_patients(phiseg):
  path, equivalent = phiseg
  records = lidc.read_lidc_records(path)
  assert set(records) == set(equivalent)
  for key, record in records.items():
    np.testing.assert_array_equal(record["image"], equivalent[key]["image"])
    np.testing.assert_array_equal(record["masks"], equivalent[key]["masks"] > 0)
  with h5py.File(path) as f:
    uids = {str(u) for name in ("train", "val", "test") for u in f[name]["uids"]}
  patients = lidc.split_patients(records, (0.34, 0.33, 0.33))
  assert set().union(*map(set, patients.values())) == uids


def test_deepmind_crops_keep_the_central_128(deepmind):
  root, _ = deepmind
  records = lidc_png.read_deepmind_records(root)
  key = "LIDC-IDRI-0001/z-100.5_c0"
  pixels = np.asarray(Image.open(root / "train/images/LIDC-IDRI-0001/z-100.5_c0.png"))
  np.testing.assert_array_equal(records[key]["image"],
                                (pixels[26:-26, 26:-26] / 255).astype(np.float32))
  assert {lidc.patient_of(k, r) for k, r in records.items()} == {
      "LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003"}


def test_deepmind_one_split_folder_readme_grader_ids_and_small_crops(tmp_path):
  root, equivalent = write_deepmind_folder(tmp_path / "a", first_grader=1)
  records = lidc.read_lidc_records(root)  # _l1 .. _l4, as their README says.
  for key, record in records.items():
    np.testing.assert_array_equal(record["masks"], equivalent[key]["masks"])
  one = lidc.read_lidc_records(root / "train")  # One unpacked archive.
  assert set(one) == {k for k in equivalent if k.startswith("LIDC-IDRI-0001")}
  small, _ = write_deepmind_folder(tmp_path / "b", size=16)  # Kept whole.
  assert lidc.read_lidc_records(small)["LIDC-IDRI-0002/z-100.5_c0"][
      "image"].shape == (16, 16)


def test_manifest_is_deterministic_and_the_same_for_the_same_patients(
    tmp_path, deepmind):
  root, _ = deepmind
  # A pickle of the same three patients (other crops, Knegt's keys).
  pickled = write_lidc_file(tmp_path / "data_lidc.pickle",
                            make_lidc_records(num_patients=3))
  lidc._MANIFESTS.clear()  # pylint: disable=protected-access
  read = lidc.lidc_split_manifest(root)  # Not loaded: read from the folder.
  lidc.load_lidc_splits(root)
  assert lidc.lidc_split_manifest(root) == read
  assert lidc.lidc_split_manifest(pickled) == read
  patients = lidc.split_patients(lidc.read_lidc_records(pickled))
  assert read == lidc.split_manifest(patients, lidc.FRACTIONS, 0)
  assert read["seed"] == 0 and read["fractions"] == [0.7, 0.15, 0.15]
  text = json.dumps(read["patients"], sort_keys=True, separators=(",", ":"))
  assert read["sha256"] == hashlib.sha256(text.encode()).hexdigest()
  others = [lidc.lidc_split_manifest(root, seed=s) for s in (1, 2, 3)]
  assert any(m["sha256"] != read["sha256"] for m in others)
  assert all(m["seed"] == s for m, s in zip(others, (1, 2, 3)))


def test_results_record_the_split_loaded(phiseg):
  from cvae_jax.tasks import prob_unet  # pylint: disable=g-import-not-at-top
  path, _ = phiseg
  config = tiny_prob_unet_config(dataset="lidc", image_size=128)
  config.data.update(lidc_path=str(path), lidc_fractions=(0.34, 0.33, 0.33))
  splits.ambiguous_splits(config)
  record = prob_unet.TASK.split_record(config)
  assert record["lidc_split"] == lidc.lidc_split_manifest(
      path, (0.34, 0.33, 0.33), config.data.seed)
  assert json.loads(json.dumps(record)) == record  # results.json can hold it.
  config.dataset = "mnist_ambiguous"
  assert splits.ambiguous_split_record(config) == {}


def test_the_workdir_keeps_its_split_and_refuses_another(tmp_path, phiseg):
  """split.json is written once; the same split passes, another split or a
  corrupt file is a one-line error and the file is left as it was."""
  path, _ = phiseg
  record = {"lidc_split": lidc.lidc_split_manifest(path, (0.34, 0.33, 0.33), 0)}
  results_file.keep_split(tmp_path, record)
  written = (tmp_path / results_file.SPLIT_FILE).read_text()
  assert json.loads(written) == record
  results_file.keep_split(tmp_path, record)  # A resume on the same split.
  other = {"lidc_split": lidc.lidc_split_manifest(path, (0.34, 0.33, 0.33), 1)}
  assert other != record
  with pytest.raises(UserError, match="use a new --workdir") as error:
    results_file.keep_split(tmp_path, other)
  assert "\n" not in str(error.value)
  assert (tmp_path / results_file.SPLIT_FILE).read_text() == written
  (tmp_path / results_file.SPLIT_FILE).write_text("{not json")
  with pytest.raises(UserError, match="delete it to record"):
    results_file.keep_split(tmp_path, record)


def _without(path, group, dataset):
  with h5py.File(path, "a") as f:
    del f[group][dataset]


def _replace(path, group, dataset, data):
  with h5py.File(path, "a") as f:
    del f[group][dataset]
    f[group].create_dataset(dataset, data=data)


@pytest.mark.parametrize("change, fragment", [
    (lambda p: _without(p, "train", "labels"),
     "group 'train' has no labels dataset"),
    (lambda p: [_without(p, g, "images") for g in ("train", "val", "test")],
     "has no images dataset"),
    (lambda p: _replace(p, "val", "labels", np.zeros((2, 128, 128), np.uint8)),
     r"val/labels has shape \(2, 128, 128\), val/images \(2, 128, 128\)"),
    (lambda p: _replace(p, "test", "labels", np.zeros((2, 64, 64, 4), np.uint8)),
     r"test/labels has shape \(2, 64, 64, 4\)"),
    (lambda p: _replace(p, "test", "uids", np.zeros(3, np.int64)),
     r"test/uids is int64 \(3,\), expected one"),
    (lambda p: [_replace(p, "test", d, np.zeros(s, t)) for d, s, t in (
        ("images", (2, 64, 64), float), ("labels", (2, 64, 64, 4), np.uint8))],
     r"test has crops \[H, W, graders\] = \[64, 64, 4\] but train"),
    (lambda p: _replace(p, "val", "images", np.full((2, 128, 128), np.nan)),
     r"val/images\[0\] has NaN"),
])
def test_bad_hdf5_files_are_one_line_errors(phiseg, change, fragment):
  path, _ = phiseg
  change(path)
  with pytest.raises(UserError, match=fragment) as info:
    lidc.load_lidc_splits(path)
  assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_hdf5_not_phiseg_or_not_hdf5(tmp_path, monkeypatch):
  with h5py.File(tmp_path / "other.hdf5", "w") as f:
    f.create_dataset("x", data=np.zeros(3))
  with pytest.raises(UserError, match="has no train, val, test group"):
    lidc.load_lidc_splits(tmp_path / "other.hdf5")
  (tmp_path / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
  with pytest.raises(UserError, match="broken.h5 is not a readable HDF5 file"):
    lidc.load_lidc_splits(tmp_path / "broken.h5")
  monkeypatch.setitem(__import__("sys").modules, "h5py", None)
  with pytest.raises(UserError, match="needs h5py: pip install h5py$"):
    lidc.load_lidc_splits(tmp_path / "other.hdf5")


def _colour(root):
  path = root / "val/images/LIDC-IDRI-0002/z-100.5_c0.png"
  Image.new("RGB", (PNG_SIZE, PNG_SIZE)).save(path)


@pytest.mark.parametrize("change, fragment", [
    (lambda r: (r / "test/gt/LIDC-IDRI-0003/z-98.0_c1_l2.png").unlink(),
     r"grader 2's mask .*LIDC-IDRI-0003/z-98.0_c1_l2.png is missing"),
    (lambda r: _save_png(r / "train/gt/LIDC-IDRI-0001/z-100.5_c0_l1.png",
                         np.zeros((64, 64), np.uint8)),
     r"z-100.5_c0_l1.png is 64x64 but its image 180x180"),
    (lambda r: _save_png(r / "val/images/LIDC-IDRI-0002/z-98.0_c1.png",
                         np.zeros((64, 64), np.uint8)),
     r"z-98.0_c1.png is 64x64 but .*z-100.5_c0.png 180x180"),
    (_colour, "z-100.5_c0.png has 3 channels, not one: expected a grey PNG"),
    (lambda r: (r / "train/images/LIDC-IDRI-0001/z-100.5_c0.png").write_bytes(
        b"not a png"), "z-100.5_c0.png is not a readable PNG"),
])
def test_bad_png_folders_are_one_line_errors(deepmind, change, fragment):
  root, _ = deepmind
  change(root)
  with pytest.raises(UserError, match=fragment) as info:
    lidc.load_lidc_splits(root)
  assert "\n" not in str(info.value)


def test_png_folders_without_crops_or_with_a_crop_twice(tmp_path, deepmind):
  root, _ = deepmind
  for kind in ("images", "gt"):  # Patient 1's crops in test/ as well.
    shutil.copytree(root / "train" / kind / "LIDC-IDRI-0001",
                    root / "test" / kind / "LIDC-IDRI-0001")
  with pytest.raises(UserError, match="crop 'LIDC-IDRI-0001/z-100.5_c0' is in "
                     "both .*test.* and .*train"):
    lidc.load_lidc_splits(root)
  empty = tmp_path / "empty"
  (empty / "images").mkdir(parents=True)
  (empty / "gt").mkdir()
  with pytest.raises(UserError, match="holds no crops"):
    lidc.load_lidc_splits(empty)


def test_paths_of_no_accepted_form_name_the_three(tmp_path):
  (tmp_path / "notes.txt").write_text("no data here")
  for path, fragment in ((tmp_path, "holds no LIDC data"),
                         (tmp_path / "missing.hdf5", "not found")):
    with pytest.raises(UserError, match=fragment) as info:
      lidc.load_lidc_splits(path)
    message = str(info.value)
    assert "\n" not in message
    for form in ("data_lidc.pickle", ".hdf5", "DeepMind's PNG"):
      assert form in message
  (tmp_path / "data_lidc.bin").write_bytes(b"junk")  # Any other file: a pickle.
  with pytest.raises(UserError, match="is not a readable LIDC pickle .* also "
                     "takes PHiSeg's .hdf5 file or DeepMind's PNG crop folder"):
    lidc.load_lidc_splits(tmp_path / "data_lidc.bin")
  (tmp_path / "test.tar.gz").write_bytes(b"\x1f\x8b")
  with pytest.raises(UserError, match="test.tar.gz is an archive: unpack it"):
    lidc.load_lidc_splits(tmp_path / "test.tar.gz")
