"""DeepMind's LIDC crops (PNG files) as `lidc.read_lidc_records` crops.

Kohl et al.'s own preprocessing of LIDC-IDRI for the Hierarchical
Probabilistic U-Net (github.com/google-deepmind/deepmind-research,
`hierarchical_probabilistic_unet/README.md` and `HPU_Net.ipynb`; the data in
the bucket gs://hpunet-data/lidc_crops/, one .tar.gz per split). A split's
archive unpacks to a folder (`test/` for test.tar.gz) of

  images/<patient>/<name>.png      a 180 x 180 grey CT crop
  gt/<patient>/<name>_l<k>.png     grader k's binary mask of that crop

with <name> `z-<slice z position>_c<crop number>` and k = 0..3 (their
notebook reads `_l0` .. `_l3`; the README says labeller ids 1..4, also
accepted). Their notebook reads each PNG with matplotlib's imread (pixels
scaled to [0, 1]) and keeps the central 128 x 128 (`[26:-26, 26:-26]`).

Read here the same way, with the same imread: image as it gives it, masks
its nonzero pixels, both centre-cropped to 128 x 128 when larger; key
"<patient>/<name>", the patient its folder's name (`lidc.patient_of` finds a
`LIDC-IDRI-NNNN` in it, else takes the folder name whole). `path` is one
split's folder (holding images/ and gt/) or a folder of them (train/, val/,
test/, ...): every split folder found is read and the patients are pooled
and split by `lidc`'s seeded patient split, like the pickle's; their own
split (also by patient) is not kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvae_jax.errors import UserError, first_line

# The flag every LIDC reader's errors name (lidc.py and lidc_hdf5.py too).
PATH_OPTION = "--config.data.lidc_path"

__all__ = ["PATH_OPTION", "CROP_SIZE", "GRADERS", "split_folders", "read_deepmind_records"]

CROP_SIZE = 128  # The notebook's [26:-26, 26:-26] of a 180 x 180 crop.
GRADERS = 4
_SOURCE = ("DeepMind's LIDC crops (gs://hpunet-data/lidc_crops/, "
           "hierarchical_probabilistic_unet in "
           "github.com/google-deepmind/deepmind-research)")


def _is_split_folder(folder: Path) -> bool:
  return (folder / "images").is_dir() and (folder / "gt").is_dir()


def split_folders(path: str | Path) -> list[Path]:
  """`path` when it holds images/ and gt/, else its sub-folders that do, in
  name order (none: not DeepMind's crops)."""
  path = Path(path)
  if _is_split_folder(path):
    return [path]
  return sorted(d for d in path.iterdir() if d.is_dir() and _is_split_folder(d))


def _read_png(path: Path) -> np.ndarray:
  """float32 [H, W] in [0, 1] of a grey PNG (matplotlib's imread: 8-bit
  pixels / 255, 16-bit / 65535), or a UserError naming it."""
  from matplotlib import image as mpl_image  # pylint: disable=g-import-not-at-top
  try:
    pixels = mpl_image.imread(path)
  except (OSError, ValueError, SyntaxError) as e:
    raise UserError(f"{path} is not a readable PNG ({first_line(e)}); unpack "
                    "the archive again") from e
  if pixels.ndim != 2:
    raise UserError(f"{path} has {pixels.shape[-1]} channels, not one: "
                    f"expected a grey PNG as in {_SOURCE}")
  return pixels


def _centre_crop(array: np.ndarray) -> np.ndarray:
  top, left = ((max(n - CROP_SIZE, 0)) // 2 for n in array.shape[-2:])
  return array[..., top:top + CROP_SIZE, left:left + CROP_SIZE]


def _grader_ids(image: Path, gt: Path) -> range:
  """0..3 (their notebook) or 1..4 (their README), from the first crop."""
  if (gt / f"{image.stem}_l{GRADERS}.png").exists() and not (
      gt / f"{image.stem}_l0.png").exists():
    return range(1, GRADERS + 1)
  return range(GRADERS)


def read_deepmind_records(path: str | Path) -> dict[str, dict]:
  """The crops under DeepMind's LIDC folder, as `lidc.read_lidc_records`'.

  Returns:
    {"<patient>/<name>": {"image": float32 [128, 128] in [0, 1], "masks":
    bool [4, 128, 128], "series_uid": the patient folder's name (the PNGs
    carry no series uid)}}.

  Raises:
    UserError: one line naming the file: no split folder, no crops, a
      missing grader PNG, an unreadable or colour PNG, a mask of another
      size than its image, crops of different sizes, a crop in two split
      folders.
  """
  path = Path(path).expanduser()
  folders = split_folders(path)
  if not folders:
    raise UserError(f"{path} holds no images/ and gt/ folders (nor split "
                    f"folders of them): is it {_SOURCE}? check {PATH_OPTION}")
  records: dict[str, dict] = {}
  origin: dict[str, Path] = {}
  reference, graders = None, None
  for folder in folders:
    patients = sorted(d for d in (folder / "images").iterdir() if d.is_dir())
    for patient in patients:
      for image_path in sorted(patient.glob("*.png")):
        key = f"{patient.name}/{image_path.stem}"
        if key in records:
          raise UserError(f"crop {key!r} is in both {origin[key]} and "
                          f"{image_path}: remove one of the split folders")
        gt = folder / "gt" / patient.name
        graders = graders or _grader_ids(image_path, gt)
        image = _read_png(image_path)
        reference = reference or (image_path, image.shape)
        if image.shape != reference[1]:
          raise UserError(f"{image_path} is {image.shape[0]}x{image.shape[1]} "
                          f"but {reference[0]} {reference[1][0]}x"
                          f"{reference[1][1]}: all crops must have one size")
        masks = []
        for k in graders:
          mask_path = gt / f"{image_path.stem}_l{k}.png"
          if not mask_path.is_file():
            raise UserError(f"grader {k}'s mask {mask_path} is missing (each "
                            f"image needs {GRADERS}: _l{graders[0]}.png .. "
                            f"_l{graders[-1]}.png); unpack the archive again")
          mask = _read_png(mask_path)
          if mask.shape != image.shape:
            raise UserError(f"{mask_path} is {mask.shape[0]}x{mask.shape[1]} "
                            f"but its image {image.shape[0]}x{image.shape[1]}")
          masks.append(mask > 0)
        records[key] = {"image": np.array(_centre_crop(image), np.float32),
                        "masks": np.ascontiguousarray(
                            _centre_crop(np.stack(masks))),
                        "series_uid": patient.name}
        origin[key] = image_path
  if not records:
    raise UserError(f"{path} holds no crops (no images/<patient>/*.png): "
                    f"{_SOURCE}")
  return records
