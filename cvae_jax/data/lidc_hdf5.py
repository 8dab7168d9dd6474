"""PHiSeg's LIDC file (`data_lidc.hdf5`) as `lidc.read_lidc_records` crops.

PHiSeg (Baumgartner et al. 2019, github.com/baumgach/PHiSeg-code,
`data/lidc_data_loader.py`) converts `data_lidc.pickle` into one HDF5 file
with a group per split of *its own* (by series), "train", "val" and "test",
each holding
  images  float64 [N, 128, 128]: the pickle's image - 0.5
  labels  uint8 [N, 128, 128, 4]: the 4 graders' masks, last axis
  uids    int64 [N]: Python's `hash()` of the crop's series_uid string
in the pickle's crop order. The crop keys (with the patient ids) are not
kept, and `hash` of a string differs between Python processes unless
PYTHONHASHSEED is fixed, so a uid names a CT series only within one file.

Read here as the pickle's crops: image + 0.5 (the pickle's values again),
masks [4, 128, 128] > 0.5, the patient the series (uid as a decimal string,
as `lidc.patient_of` falls back to the series for a key with no patient id:
a patient scanned twice counts as two, as in PHiSeg's own split), key
"<group>/<index>". The crops of all three groups are pooled and split by
`lidc`'s seeded patient split like the pickle's. Needs h5py (`pip install
h5py`), imported when a file is read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvae_jax.data.lidc_png import PATH_OPTION
from cvae_jax.errors import UserError, first_line

__all__ = ["GROUPS", "DATASETS", "read_phiseg_records"]

GROUPS = ("train", "val", "test")
DATASETS = ("images", "labels", "uids")
_SOURCE = ("PHiSeg's data_lidc.hdf5, written by data/lidc_data_loader.py in "
           "github.com/baumgach/PHiSeg-code")
# Rows read at a time: ~190 MiB of float64 images, not the whole file.
_CHUNK = 1536


def _import_h5py():
  try:
    import h5py  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError("reading an .hdf5 LIDC file needs h5py: pip install h5py"
                    ) from e
  return h5py


def _check_group(path: Path, group, name: str) -> tuple[int, int, int, int]:
  """(N, H, W, G) of a group's datasets, or a UserError naming what is off."""
  missing = [d for d in DATASETS if d not in group]
  if missing:
    raise UserError(f"{path}: group {name!r} has no {', '.join(missing)} "
                    f"dataset (each group needs {', '.join(DATASETS)}); is this "
                    f"{_SOURCE}?")
  images, labels, uids = (group[d] for d in DATASETS)
  if not all(hasattr(d, "dtype") for d in (images, labels, uids)):
    raise UserError(f"{path}: {name}/images, labels and uids must be datasets, "
                    "not groups")
  if len(images.shape) != 3 or images.dtype.kind not in "fiu":
    raise UserError(f"{path}: {name}/images is {images.dtype} {images.shape}, "
                    "expected numbers [N, H, W]")
  if len(labels.shape) != 4 or labels.shape[:3] != images.shape:
    raise UserError(f"{path}: {name}/labels has shape {labels.shape}, "
                    f"{name}/images {images.shape}: expected [N, H, W, graders]")
  if labels.dtype.kind not in "biuf":
    raise UserError(f"{path}: {name}/labels is {labels.dtype}, expected "
                    "integer masks")
  if uids.shape != images.shape[:1] or uids.dtype.kind not in "iuSO":
    raise UserError(f"{path}: {name}/uids is {uids.dtype} {uids.shape}, "
                    f"expected one integer or string per image ({images.shape[0]})")
  return (*images.shape, labels.shape[3])


def _uid_text(uid) -> str:
  return uid.decode("utf-8") if isinstance(uid, bytes) else str(uid)


def read_phiseg_records(path: str | Path) -> dict[str, dict]:
  """The crops of PHiSeg's LIDC .hdf5 file, as `lidc.read_lidc_records`'.

  Returns:
    {"<group>/<index>": {"image": float32 [H, W] (images + 0.5), "masks":
    bool [G, H, W] (labels > 0.5, graders first), "series_uid": the uid as
    a string}}, every group in GROUPS that the file has.

  Raises:
    UserError: one line naming the file: no h5py, not an HDF5 file, no
      train / val / test group, a group missing a dataset, datasets of
      mismatched shapes or of another size than the other groups', images
      with NaN or infinite values.
  """
  h5py = _import_h5py()
  path = Path(path).expanduser()
  try:
    file = h5py.File(path, "r")
  except OSError as e:
    raise UserError(f"{path} is not a readable HDF5 file ({first_line(e)}): "
                    f"{_SOURCE}; check {PATH_OPTION}") from e
  records: dict[str, dict] = {}
  with file:
    names = [name for name in GROUPS if name in file]
    if not names:
      raise UserError(f"{path} has no {', '.join(GROUPS)} group: is it "
                      f"{_SOURCE}?")
    reference = None
    for name in names:
      group = file[name]
      shape = _check_group(path, group, name)
      if reference is not None and shape[1:] != reference[1][1:]:
        raise UserError(f"{path}: {name} has crops [H, W, graders] = "
                        f"{list(shape[1:])} but {reference[0]} "
                        f"{list(reference[1][1:])}: all crops must agree")
      reference = reference or (name, shape)
      uids = [_uid_text(u) for u in group["uids"][()]]
      for start in range(0, shape[0], _CHUNK):
        stop = min(start + _CHUNK, shape[0])
        # In float64, as stored: + 0.5 gives the pickle's float32 back.
        images = (np.asarray(group["images"][start:stop], np.float64) + 0.5
                  ).astype(np.float32)
        if not np.isfinite(images).all():
          bad = start + int(np.argmin(np.isfinite(images).all(axis=(1, 2))))
          raise UserError(f"{path}: {name}/images[{bad}] has NaN or infinite "
                          "values")
        masks = np.moveaxis(np.asarray(group["labels"][start:stop]) > 0.5, -1, 1)
        for i in range(stop - start):
          records[f"{name}/{start + i:06d}"] = {
              "image": images[i], "masks": masks[i],
              "series_uid": uids[start + i]}
  if not records:
    raise UserError(f"{path} holds no crops (its groups are empty): {_SOURCE}")
  return records
