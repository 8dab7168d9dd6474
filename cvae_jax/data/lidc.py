"""LIDC-IDRI lung-lesion crops with 4 graders' masks, split by patient.

Three forms are read (`detect_format` tells them apart from what is at the
path; each gives the same arrays through the same patient split):
  * "pickle": `data_lidc.pickle` or a folder of its chunks (below);
  * "hdf5": PHiSeg's `data_lidc.hdf5` (`lidc_hdf5`), made from that pickle;
  * "png": DeepMind's PNG crops (`lidc_png`), their own preprocessing of
    LIDC-IDRI (180 x 180 crops, centre-cropped to 128 x 128 as their code does).

The pickle: the preprocessed LIDC-IDRI crops that the common Probabilistic U-Net
reimplementations share (stefanknegt/Probabilistic-Unet-Pytorch, PHiSeg, SSN,
...): `data_lidc.pickle`, from the Google Drive folder linked in the README of
https://github.com/stefanknegt/Probabilistic-Unet-Pytorch ("Train on LIDC
Dataset"). It is one pickled dict of lesion crops,

  key -> {"image": [128, 128] float, "masks": 4 x [128, 128] binary,
          "series_uid": str (the CT series' DICOM SeriesInstanceUID)},

one entry per CT slice through a lesion, the 4 masks being the 4 radiologists'
(an empty mask: that grader marked nothing there). That repo's loader reads
*every* file with `.pickle` in its name from the data folder and merges the
dicts, so the data may come in several chunks: `path` may be that file or a
folder, whose `*.pickle*` files are read in name order and merged (a key in
two chunks is an error). What is known of the values, from the readers' own
checks (not verified here on the real file): the images are already in [0, 1]
(Knegt's loader asserts it; PHiSeg subtracts 0.5 to centre them) and are kept
exactly as stored, no rescaling; the masks are in {0, 1} and are binarised here
(> 0.5). The keys name the patient first, `LIDC-IDRI-NNNN_<slice/lesion>`
(other readers take `key.split("_")[0]` as the patient), from the ~1,010
LIDC-IDRI patients.

Splits are **by patient, never by crop**. The reimplementations split by a
random crop index, so neighbouring slices of one lesion (nearly the same image
and masks) land in both train and test: test scores measure memory, not
generalisation (one of their users' top complaints). Here every crop of a
patient goes to one split. The patient of a crop is the `LIDC-IDRI-NNNN` id in
its key; a key without one falls back to the crop's `series_uid` (one CT scan:
a patient scanned twice would then count as two, which is why the key comes
first; PHiSeg splits by series_uid alone). Patient ids are sorted, permuted by
`numpy.random.default_rng(seed)` and cut by `fractions` (train, validation,
test), so a split is the same on every machine; each split with a positive
fraction gets at least one patient.

Arrays, the segmentation interface of `cvae_jax.data` (G = 4 graders):
  image  float32 [N, 128, 128, 1], as stored (in [0, 1] in the real file)
  masks  float32 [N, G, 128, 128] in {0, 1}
in each split ordered by patient id, then crop key. Strings stay out of these
(they go to jax); `split_arrays` returns each example's crop key and patient
beside them, `split_patients` each split's patients.

Training with the real file:

  python -m train.prob_unet --config=train/configs/prob_unet_lidc.py \\
      --config.data.lidc_path=/path/to/data_lidc.pickle \\
      --workdir=workdirs/prob_unet_lidc

Memory: a crop is 5 float32 planes of 128 x 128 = 320 KiB, so the ~15k crops
of the real file (a round figure; not counted here) are ~4.9 GB (4.6 GiB) as
the arrays above. While they are built, the crops read from the file are held
too, each dropped once copied: plan for ~7 GB of host RAM at the peak.
`max_examples` keeps only the first crops of each split (the split itself is
unchanged) for a quick run.

The split, recorded: `split_manifest` is {"seed", "fractions", "patients":
{split: sorted ids}, "sha256" of those lists}; two runs used the same split
exactly when their sha256 agree, whatever the form of the file. The trainer
writes it to results.json ("lidc_split"); `load_lidc_splits` keeps the last
one it made per path, seed and fractions (`lidc_split_manifest`), since the
arrays it returns carry no strings.

A pickle can run code when loaded; this reader only accepts the NumPy arrays
and builtin containers such a file holds and refuses anything else (an error
naming the object), but load only files from a source you trust.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cvae_jax.data.lidc_png import PATH_OPTION
from cvae_jax.errors import ConfigError, UserError, first_line

__all__ = ["SPLITS", "FRACTIONS", "FIELDS", "PATH_OPTION", "FORMATS",
           "detect_format", "read_lidc_records", "patient_of",
           "check_fractions", "split_patients", "split_arrays",
           "split_manifest", "lidc_split_manifest", "load_lidc_splits"]

SPLITS = ("train", "validation", "test")
FRACTIONS = (0.7, 0.15, 0.15)
FIELDS = ("image", "masks", "series_uid")
_SOURCE = ("the preprocessed LIDC crops (data_lidc.pickle) come from the Google "
           "Drive folder linked in the README of "
           "github.com/stefanknegt/Probabilistic-Unet-Pytorch")
FORMATS = ("pickle", "hdf5", "png")
_ACCEPTED = ("data_lidc.pickle (or a folder of its chunks), PHiSeg's .hdf5/.h5 "
            "file, or DeepMind's PNG crop folder (images/ and gt/, or split "
            "folders holding them)")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ARCHIVES = (".gz", ".tgz", ".tar", ".zip")
_PATIENT = re.compile(r"LIDC-IDRI-\d{4}")
# The manifests `load_lidc_splits` made, by (path, fractions, seed): the
# trainer's results.json records the split without reading the file again.
_MANIFESTS: dict[tuple, dict] = {}

# The globals a pickle of dicts / lists of NumPy arrays and strings needs,
# under the module names NumPy 1.x, 2.x and Python 2 pickles use.
_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray",
                  "numpy.core.numeric", "numpy._core.numeric")
_NUMPY_NAMES = ("_reconstruct", "scalar", "_frombuffer", "frombuffer",
                "ndarray", "dtype")
_BUILTIN_NAMES = ("set", "frozenset", "complex", "slice", "range", "bytearray",
                  "list", "dict", "tuple", "str", "bytes", "int", "float",
                  "bool")
_ALLOWED_GLOBALS = frozenset(
    [(m, n) for m in _NUMPY_MODULES for n in _NUMPY_NAMES]
    + [(m, n) for m in ("builtins", "__builtin__") for n in _BUILTIN_NAMES]
    + [("_codecs", "encode"), ("collections", "OrderedDict"),
       ("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor")])


class _ArraysOnlyUnpickler(pickle.Unpickler):
  """Refuses any global but the NumPy / builtin ones a data pickle needs."""

  def find_class(self, module, name):
    if (module, name) not in _ALLOWED_GLOBALS:
      raise pickle.UnpicklingError(
          f"it holds {module}.{name}, not only arrays and strings")
    return super().find_class(module, name)


def _pickle_chunks(folder: Path) -> list[Path]:
  return sorted(p for p in folder.iterdir()
                if ".pickle" in p.name and p.is_file())


def detect_format(path: str | Path) -> str:
  """Which of `FORMATS` is at `path`, from names and a file's first bytes.

  "hdf5": a file with HDF5's signature or an .hdf5 / .h5 name; "pickle":
  any other file but an archive, or a folder with `*.pickle*` files; "png":
  a folder that `lidc_png.split_folders` finds crops in. UserError naming
  the accepted forms when `path` is missing or holds none of them, and
  saying to unpack an archive (.tar.gz, .zip).
  """
  from cvae_jax.data import lidc_png  # pylint: disable=g-import-not-at-top
  path = Path(path).expanduser()
  if path.is_file():
    try:
      with open(path, "rb") as f:
        signature = f.read(len(_HDF5_SIGNATURE))
    except OSError as e:
      raise UserError(f"cannot read LIDC file {path} ({first_line(e)}); "
                      f"check {PATH_OPTION}") from e
    if signature == _HDF5_SIGNATURE or path.suffix in (".hdf5", ".h5"):
      return "hdf5"
    if path.suffix in _ARCHIVES:
      raise UserError(f"{path} is an archive: unpack it and pass the folder "
                      f"(DeepMind's crops) or the file in it as {PATH_OPTION}")
    return "pickle"
  if not path.exists():
    raise UserError(f"LIDC file {path} not found: {_SOURCE}; download it and "
                    f"pass {PATH_OPTION}=/path/to/data_lidc.pickle (accepted: "
                    f"{_ACCEPTED})")
  if _pickle_chunks(path):
    return "pickle"
  if lidc_png.split_folders(path):
    return "png"
  raise UserError(f"the folder {path} holds no LIDC data; {PATH_OPTION} takes "
                  f"{_ACCEPTED}")


def _chunk_files(path: Path) -> list[Path]:
  """The file itself, or a folder's `*.pickle*` files in name order."""
  return _pickle_chunks(path) if path.is_dir() else [path]


def _read_chunk(path: Path) -> Any:
  try:
    with open(path, "rb", buffering=1 << 24) as f:
      # latin1: also reads NumPy arrays pickled by Python 2.
      return _ArraysOnlyUnpickler(f, encoding="latin1").load()
  except MemoryError:
    raise
  except OSError as e:
    raise UserError(f"cannot read LIDC file {path} ({first_line(e)}); check "
                    f"{PATH_OPTION}") from e
  except Exception as e:  # pylint: disable=broad-except
    # UnpicklingError, EOFError (truncated), ValueError, UnicodeDecodeError...
    raise UserError(f"{path} is not a readable LIDC pickle ({first_line(e)}): "
                    f"{_SOURCE}; download it again ({PATH_OPTION} also takes "
                    "PHiSeg's .hdf5 file or DeepMind's PNG crop folder)") from e


def _check_record(key, record, file: Path, reference: dict | None
                  ) -> tuple[np.ndarray, np.ndarray, dict]:
  """(image [H, W], masks [G, H, W]) of one crop, or a UserError naming it."""
  if not isinstance(record, Mapping):
    raise UserError(f"crop {key!r} in {file} is a {type(record).__name__}, not "
                    f"a dict with {', '.join(FIELDS)}; is this data_lidc.pickle?")
  missing = [name for name in FIELDS if name not in record]
  if missing:
    raise UserError(f"crop {key!r} in {file} has no {', '.join(missing)} "
                    f"(a crop needs {', '.join(FIELDS)}); is this "
                    "data_lidc.pickle?")
  if isinstance(record["masks"], (list, tuple)):
    image_shape = np.shape(record["image"])
    for j, mask in enumerate(record["masks"]):
      if np.shape(mask) != image_shape:
        raise UserError(f"crop {key!r} in {file}: mask {j} has shape "
                        f"{np.shape(mask)}, the image {image_shape}: masks "
                        "must have the image's size")
  try:
    image = np.asarray(record["image"], dtype=np.float32)
    masks = np.asarray(record["masks"], dtype=np.float32)
  except (TypeError, ValueError) as e:
    raise UserError(f"crop {key!r} in {file}: image or masks is not a numeric "
                    f"array ({first_line(e)})") from e
  if image.ndim != 2:
    raise UserError(f"crop {key!r} in {file}: image has shape {image.shape}, "
                    "expected [H, W] (one grey CT crop)")
  if masks.ndim != 3 or masks.shape[1:] != image.shape:
    raise UserError(f"crop {key!r} in {file}: masks have shape {masks.shape}, "
                    f"the image {image.shape}: expected [graders, "
                    f"{image.shape[0]}, {image.shape[1]}], masks of the image's "
                    "size")
  if not np.isfinite(image).all():
    raise UserError(f"crop {key!r} in {file}: image has NaN or infinite values")
  if not isinstance(record["series_uid"], str):
    raise UserError(f"crop {key!r} in {file}: series_uid is a "
                    f"{type(record['series_uid']).__name__}, expected a str")
  if reference is None:
    reference = {"key": key, "file": file, "image": image.shape,
                 "graders": masks.shape[0]}
  elif image.shape != reference["image"]:
    raise UserError(f"crop {key!r} in {file} has a {image.shape[0]}x"
                    f"{image.shape[1]} image but crop {reference['key']!r} a "
                    f"{reference['image'][0]}x{reference['image'][1]} one: all "
                    "crops must have the same size")
  elif masks.shape[0] != reference["graders"]:
    raise UserError(f"crop {key!r} in {file} has {masks.shape[0]} masks but "
                    f"crop {reference['key']!r} has {reference['graders']}: all "
                    "crops must have the same number of graders")
  return image, masks, reference


def read_lidc_records(path: str | Path) -> dict[str, dict]:
  """The crops at `path`, in any of `FORMATS` (`detect_format`), checked.

  Returns:
    {crop key: {"image": float32 [H, W], "masks": bool [G, H, W] (the stored
    masks > 0.5), "series_uid": str}}, H, W, G the same for every crop;
    images as stored in the pickle. The other forms' crops come in the same
    shape: `lidc_hdf5.read_phiseg_records`, `lidc_png.read_deepmind_records`.

  Raises:
    UserError: one line naming the file or crop: no such file, none of the
      accepted forms, not a pickle (or truncated), not a dict, no crops, a
      crop missing a field, masks of another size than the image, crops of
      different sizes or numbers of masks, two chunks with the same key.
  """
  path = Path(path).expanduser()
  form = detect_format(path)
  # pylint: disable=g-import-not-at-top
  if form == "hdf5":
    from cvae_jax.data import lidc_hdf5
    return lidc_hdf5.read_phiseg_records(path)
  if form == "png":
    from cvae_jax.data import lidc_png
    return lidc_png.read_deepmind_records(path)
  return _read_pickle_records(path)


def _read_pickle_records(path: Path) -> dict[str, dict]:
  records: dict[str, dict] = {}
  origin: dict[str, Path] = {}
  reference = None
  for file in _chunk_files(path):
    data = _read_chunk(file)
    if not isinstance(data, Mapping):
      raise UserError(f"{file} holds a {type(data).__name__}, not a dict of "
                      f"crops: {_SOURCE}")
    for key in list(data):
      if key in records:
        raise UserError(f"crop {key!r} is in both {origin[key]} and {file}: "
                        "remove the duplicate chunk from the folder")
      image, masks, reference = _check_record(key, data[key], file, reference)
      records[key] = {"image": image,
                      "masks": masks > 0.5,
                      "series_uid": data[key]["series_uid"]}
      origin[key] = file
      del data[key]  # Free the raw crop as soon as it is converted.
  if not records:
    raise UserError(f"{path} holds no crops (an empty dict): {_SOURCE}")
  return records


def patient_of(key: str, record: Mapping) -> str:
  """The crop's patient: the `LIDC-IDRI-NNNN` in its key, else its series_uid."""
  match = _PATIENT.search(str(key))
  return match.group(0) if match else str(record["series_uid"])


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
  """(train, validation, test) fractions, or a ConfigError."""
  try:
    values = tuple(float(f) for f in fractions)
  except (TypeError, ValueError):
    values = ()
  if (len(values) != len(SPLITS) or not all(map(math.isfinite, values))
      or min(values) < 0 or not math.isclose(sum(values), 1.0, abs_tol=1e-6)):
    raise ConfigError(f"LIDC split fractions must be 3 non-negative numbers "
                      f"(train, validation, test) summing to 1, got "
                      f"{fractions!r}; e.g. (0.7, 0.15, 0.15)")
  return values  # type: ignore[return-value]


def _split_sizes(num_patients: int, fractions: Sequence[float]) -> list[int]:
  """Patients per split: the cumulative fractions of the count rounded half
  up, then one patient moved from the largest split to each empty split that
  has a positive fraction."""
  needed = sum(f > 0 for f in fractions)
  if num_patients < needed:
    raise UserError(f"the LIDC file has {num_patients} patient(s), fewer than "
                    f"the {needed} splits with a positive fraction: use the "
                    "full file, or set a split's fraction to 0")
  # Half up (not Python's half-to-even), with slack for float sums.
  bounds = [math.floor(num_patients * c + 0.5 + 1e-9)
            for c in np.cumsum(fractions)]
  bounds[-1] = num_patients
  sizes = np.diff([0] + bounds).tolist()
  for i, fraction in enumerate(fractions):
    if fraction > 0 and sizes[i] == 0:
      sizes[int(np.argmax(sizes))] -= 1  # The largest has >= 2 here.
      sizes[i] = 1
  return sizes


def split_patients(records: Mapping[str, Mapping],
                   fractions: Sequence[float] = FRACTIONS,
                   seed: int = 0) -> dict[str, list[str]]:
  """{"train", "validation", "test"} -> the split's patients, sorted.

  Sorted patient ids (`patient_of`), permuted by default_rng(seed), cut by
  `fractions`: disjoint, covering every patient of `records`.
  """
  fractions = check_fractions(fractions)
  patients = sorted({patient_of(k, r) for k, r in records.items()})
  order = np.random.default_rng(seed).permutation(len(patients))
  shuffled = [patients[i] for i in order]
  result, start = {}, 0
  for name, size in zip(SPLITS, _split_sizes(len(patients), fractions)):
    result[name] = sorted(shuffled[start:start + size])
    start += size
  return result


def _limits(max_examples) -> dict[str, int | None]:
  if max_examples is None or isinstance(max_examples, Mapping):
    given = dict(max_examples or {})
    unknown = set(given) - set(SPLITS)
    if unknown:
      raise ConfigError(f"max_examples names unknown split(s) {sorted(unknown)};"
                        f" use {', '.join(SPLITS)}")
  else:
    given = {name: max_examples for name in SPLITS}
  for name, limit in given.items():
    if limit is not None and (not isinstance(limit, (int, np.integer))
                              or isinstance(limit, bool) or limit <= 0):
      raise ConfigError(f"max_examples must be a positive integer or None "
                        f"(per split or for all), got {limit!r} for {name}")
  return {name: given.get(name) for name in SPLITS}


def _build(records, fractions, seed: int, max_examples, consume: bool
           ) -> tuple[dict[str, dict[str, np.ndarray]],
                      dict[str, dict[str, list[str]]]]:
  limits = _limits(max_examples)
  patients = split_patients(records, fractions, seed)
  split_of = {p: name for name, group in patients.items() for p in group}
  members: dict[str, list[tuple[str, str]]] = {name: [] for name in SPLITS}
  for key, record in records.items():
    patient = patient_of(key, record)
    members[split_of[patient]].append((patient, key))
  first = next(iter(records.values()))
  graders, height, width = np.shape(first["masks"])
  arrays, ids = {}, {}
  for name in SPLITS:
    chosen = sorted(members[name])[:limits[name]]
    image = np.empty((len(chosen), height, width, 1), np.float32)
    masks = np.empty((len(chosen), graders, height, width), np.float32)
    for i, (_, key) in enumerate(chosen):
      record = records.pop(key) if consume else records[key]
      image[i, ..., 0] = record["image"]
      masks[i] = np.asarray(record["masks"]) > 0.5
    arrays[name] = {"image": image, "masks": masks}
    ids[name] = {"key": [key for _, key in chosen],
                 "patient": [patient for patient, _ in chosen]}
  return arrays, ids


def split_arrays(records: Mapping[str, Mapping],
                 fractions: Sequence[float] = FRACTIONS, seed: int = 0,
                 max_examples=None
                 ) -> tuple[dict[str, dict[str, np.ndarray]],
                            dict[str, dict[str, list[str]]]]:
  """`read_lidc_records` output -> (arrays, ids), split by patient.

  Returns:
    arrays: {"train", "validation", "test"} -> {"image": float32
      [N, H, W, 1], "masks": float32 [N, G, H, W] in {0, 1}}.
    ids: the same splits -> {"key": N crop keys, "patient": N patient ids},
      example i of arrays[split] being crop ids[split]["key"][i].
  """
  return _build(records, fractions, seed, max_examples, consume=False)


def split_manifest(patients: Mapping[str, Sequence[str]],
                   fractions: Sequence[float] = FRACTIONS, seed: int = 0
                   ) -> dict:
  """What identifies a patient split, for results.json.

  Args:
    patients: `split_patients`' output, {split: patient ids}.
    fractions, seed: what made it.

  Returns:
    {"seed": int, "fractions": [train, validation, test], "patients":
    {split: sorted ids}, "sha256": hex digest of the sorted id lists as
    compact JSON}: equal digests, the same patients in the same splits.
  """
  lists = {name: sorted(str(p) for p in patients[name]) for name in SPLITS}
  text = json.dumps(lists, sort_keys=True, separators=(",", ":"))
  return {"seed": int(seed), "fractions": list(check_fractions(fractions)),
          "patients": lists,
          "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def _manifest_key(path, fractions, seed) -> tuple:
  return (str(Path(path).expanduser().resolve()), check_fractions(fractions),
          int(seed))


def lidc_split_manifest(path: str | Path,
                        fractions: Sequence[float] = FRACTIONS, seed: int = 0
                        ) -> dict:
  """`split_manifest` of the patients at `path`: the one `load_lidc_splits`
  made for the same path, fractions and seed in this process, else read
  from the data (a full read of the file)."""
  key = _manifest_key(path, fractions, seed)
  if key not in _MANIFESTS:
    records = read_lidc_records(path)
    _MANIFESTS[key] = split_manifest(split_patients(records, fractions, seed),
                                     fractions, seed)
  return json.loads(json.dumps(_MANIFESTS[key]))  # A copy to keep.


def load_lidc_splits(path: str | Path,
                     fractions: Sequence[float] = FRACTIONS, seed: int = 0,
                     max_examples=None) -> dict[str, dict[str, np.ndarray]]:
  """{"train", "validation", "test"} -> {"image": float32 [N, H, W, 1] as
  stored, "masks": float32 [N, G, H, W] in {0, 1}} from the LIDC data; the
  split's `split_manifest` is kept for `lidc_split_manifest`.

  Args:
    path: data_lidc.pickle or a folder of its pickle chunks, PHiSeg's .hdf5
      file, or DeepMind's PNG crop folder (`detect_format`).
    fractions: (train, validation, test) shares of the *patients*.
    seed: the permutation of the sorted patient ids.
    max_examples: None (all), an int n (the first n crops of every split) or
      {split: n}; the split is the same, only shortened.

  Raises:
    UserError / ConfigError: one line saying what to change (see
      `read_lidc_records`, `check_fractions`).
  """
  check_fractions(fractions)
  _limits(max_examples)
  records = read_lidc_records(path)
  _MANIFESTS[_manifest_key(path, fractions, seed)] = split_manifest(
      split_patients(records, fractions, seed), fractions, seed)
  arrays, _ = _build(records, fractions, seed, max_examples, consume=True)
  return arrays
