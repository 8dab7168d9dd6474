"""The README's ambiguous-segmentation table: the deterministic U-Net, Sohn
et al.'s conv CVAE, the Probabilistic U-Net, the HPU-Net, PHiSeg and SSN on
the offline MNIST sets whose grader distribution is known (`constant`: the
same for every image; `image_dependent`: set by the digits' classes), beside
that distribution's own figures (the floor) and the best distribution that
ignores x; each row is `python -m train.prob_unet --config.model=<model>
[--config.data.ambiguity=image_dependent]`.

  python -m benchmarks.prob_unet_table            # the full table
  python -m benchmarks.prob_unet_table --quick    # tiny: checks the pipeline

Runs and records as `harness` says, in ROOT/<model> and
ROOT/image_dependent/<model> (under ROOT/quick with --quick); a recorded row
whose workdir is gone is always kept.
"""

import functools
import shutil
from pathlib import Path

import numpy as np

from benchmarks import harness
from cvae_jax import configs
from cvae_jax.tasks import prob_unet
from cvae_jax.training import hooks
from cvae_jax.training import results as results_file
from train.configs import prob_unet as prob_unet_config

_TABLE = harness.define_table_flags(
    "prob_unet_table", "1 epoch on 256 images, S <= 16.", rerun_recorded=False)
ORDER = ("unet", "sohn_cvae", "prob_unet", "hpu_net", "phiseg", "ssn")
SETS = ("constant", "image_dependent")
_MODELS = harness.define_list("models", list(ORDER), "Rows of the constant set.", ORDER)
_DEPENDENT = harness.define_list("image_dependent_models",
                                 ["unet", "prob_unet", "hpu_net", "ssn"],
                                 "Rows of the image-dependent set.", ORDER)

LABELS = {"unet": "deterministic U-Net", "sohn_cvae": "Sohn et al. conv CVAE",
          "prob_unet": "Probabilistic U-Net", "hpu_net": "HPU-Net",
          "phiseg": "PHiSeg", "ssn": "SSN"}


def _set(record: dict) -> str:
  return record.get("set", "constant")


def workdir_of(model: str, ambiguity: str = "constant") -> Path:
  return (Path(_TABLE.root.value) / ("quick" if _TABLE.quick.value else "")
          / ("" if ambiguity == "constant" else ambiguity) / model)


# What --quick changes (1 epoch on 256 images, S <= 16).
QUICK = {"num_epochs": 1, "data.max_train_examples": 256, "data.max_eval_examples": 64,
         "eval.num_samples": 16, "eval.chunk_size": 16, "eval.ged_samples": (1, 4, 16),
         "log_every_steps": 4, "checkpoint_every_steps": 8,
         "lr_schedule.warmup_steps": 2, "kl_schedule.warmup_steps": 4}


def run_row(ambiguity: str, model: str, recorded: dict | None) -> dict:
  """Trains and evaluates one model on one set, or reuses its finished
  workdir, or `recorded` when the workdir is gone."""
  workdir = workdir_of(model, ambiguity)
  if not workdir.exists() and recorded is not None:
    return recorded
  config = prob_unet_config.get_config()
  quick = QUICK if _TABLE.quick.value else {}
  recipe = configs.recipe_of(configs.with_overrides(config, {"model": model}))
  config = configs.with_overrides(config, {
      "model": model, "data.ambiguity": ambiguity, "data_dir": _TABLE.data_dir.value,
      **quick, **{f"recipes.{model}.{k}": v for k, v in quick.items() if k in recipe}})
  results, spent = harness.timed_run(prob_unet.train_and_evaluate, config, workdir,
                                     LABELS[model])
  config = results["config"]
  trained = hooks.steps_trained(hooks.read_history(workdir), results["steps"])
  images = config["data"]["max_train_examples"] or TRAIN_IMAGES
  return {"set": ambiguity, "model": model, "test": results["test"],
          "best_epoch": results["best_epoch"],
          "selected_by": results_file.best_epoch(workdir)["metric"],
          "max_epochs": config["num_epochs"], "steps": trained,
          "epochs_trained": trained // (images // config["batch_size"]),
          "num_test_images": results["num_test_images"],
          "ged_samples": config["eval"]["ged_samples"],
          "hungarian_samples": config["eval"]["hungarian_samples"],
          "num_samples": config["eval"]["num_samples"],
          "curves": learning_curves(workdir),
          **dict(zip(("wall_seconds", "untimed_steps"),
                     wall_seconds(results, spent, hooks.read_history(workdir)))),
          "command": ("python -m train.prob_unet --config=train/configs/"
                      f"prob_unet.py --config.model={model}" + (
                          "" if ambiguity == "constant"
                          else f" --config.data.ambiguity={ambiguity}"))}


def wall_seconds(results: dict, spent: float, history: list) -> tuple[float | None, int]:
  """(the row's wall time, steps it leaves out): its training segments'
  seconds (the run history records each invocation's) and its evaluation's;
  the steps of segments trained before the history recorded seconds are left
  out and counted. A history with no seconds at all: this call's time, or
  its results.json's (the invocation that wrote it), None when that one
  trained for under a minute (a resume of a run an earlier command trained)."""
  evaluation = sum(results["eval_seconds"].values())
  timed = [segment for segment in history if "seconds" in segment]
  if timed:
    return (sum(s["seconds"] for s in timed) + evaluation,
            sum(s["to_step"] - s["from_step"] for s in history if "seconds" not in s))
  trained = results.get("train_seconds_this_run", 0)
  if trained < 60:
    return None, 0
  return (trained + evaluation if trained >= spent else spent), 0


TRAIN_IMAGES = 25_000  # The offline set's training images (max_train_examples=0).
CURVES = ("validation_ged", "validation_nll")


def learning_curves(workdir: Path) -> dict:
  """{metric: [[step, value], ...]} of the validation curves and floors."""
  from cvae_jax import plotting  # pylint: disable=g-import-not-at-top
  scalars = plotting.read_scalars(workdir)
  names = (*CURVES, "validation_floor_ged", "validation_ideal_nll")
  return {name: np.stack(scalars[f"eval/{name}"], -1).tolist()
          for name in names if f"eval/{name}" in scalars}


def _mean_std(figures: dict, key: str) -> str:
  if key not in figures:
    return "n/a"
  return f"{figures[key]:.3f} ± {figures[key + '_std']:.3f}"


def _value(figures: dict, key: str, digits: int = 3) -> str:
  return f"{figures[key]:.{digits}f}" if key in figures else "n/a"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
  """Markdown lines: the header, its rule, a line per row."""
  line = lambda cells: f"| {' | '.join(cells)} |"
  return [line(header), "|" + "---|" * len(header), *map(line, rows)]


def _ged_cells(figures: dict, counts, prefix: str = "") -> list[str]:
  """GED at each S, literature / unbiased (n/a where undefined or not measured)."""
  return [f"{_value(figures, f'{prefix}ged_{s}')} / "
          f"{_value(figures, f'{prefix}ged_unbiased_{s}')}" for s in counts]


def sample_table(records: list[dict], truth: dict) -> list[str]:
  counts = records[0]["ged_samples"]
  cells = lambda f, p="": [*_ged_cells(f, counts, p), _mean_std(f, p + "samples_diversity"),
                           _mean_std(f, p + "hungarian_iou")]
  rows = [[LABELS[r["model"]], *cells(r["test"])] for r in records]
  if "floor_ged_1" in truth:
    unbiased = _value(truth, "floor_ged_unbiased")
    rows += [["true distribution, sampled", *cells(truth, "ideal_")],
             ["true distribution, expected (floor)",
              *(f"{_value(truth, f'floor_ged_{s}')} / {unbiased}" for s in counts), "", ""]]
  if "marginal_floor_ged_1" in truth:
    unbiased = _value(truth, "marginal_floor_ged_unbiased")
    rows.append(["best x-independent distribution, expected",
                 *(f"{_value(truth, f'marginal_floor_ged_{s}')} / {unbiased}"
                   for s in counts), "", ""])
  return _table(["model", *(f"GED S={s} (literature / unbiased)" for s in counts),
                 f"diversity S={max(counts)}",
                 f"Hungarian IoU S={records[0]['hungarian_samples']}"], rows)


def likelihood_table(records: list[dict], truth: dict) -> list[str]:
  cells = lambda f, p="": [_value(f, p + "mode_tv_pooled"), _mean_std(f, p + "mode_tv"),
                           _value(f, p + "unmatched"), _value(f, p + "ece", 4),
                           _value(f, p + "variance_ncc")]
  rows = [[LABELS[r["model"]], _value(r["test"], "nll", 2),
           _value(r["test"], "ce_per_pixel", 4), *cells(r["test"]),
           _value(r["test"], "dice")] for r in records]
  if "ideal_nll" in truth:
    rows.append(["true distribution, sampled", _value(truth, "ideal_nll", 2) + " exact",
                 "", *cells(truth, "ideal_"), ""])
  if "marginal_nll" in truth:
    rows.append(["best x-independent distribution", _value(truth, "marginal_nll", 2)
                 + " exact", "", _value(truth, "marginal_mode_tv_pooled"),
                 _mean_std(truth, "marginal_mode_tv"), "", "", "", ""])
  return _table(["model", "-log p(y|x) (nats/image)", "CE (nats/pixel)",
                 "mode TV, pooled", "mode TV per image", "unmatched", "ECE", "S_NCC",
                 "Dice"], rows)


def training_table(records: list[dict]) -> list[str]:
  return _table(["model", "epochs trained / cap", "best epoch (by)", "steps", "wall time"], [
      [LABELS[r["model"]], f"{r.get('epochs_trained', 'n/a')} / {r['max_epochs']}",
       f"{r['best_epoch']} ({r.get('selected_by', 'validation_loss')})",
       f"{r.get('steps', 'n/a')}", _wall_time(r)] for r in records])


def _wall_time(record: dict) -> str:
  if record["wall_seconds"] is None:
    return "n/a"
  untimed = record.get("untimed_steps", 0)
  return f"{record['wall_seconds'] / 60:.1f} min" + (
      f" + {untimed} untimed steps" if untimed else "")


def goals(f: dict) -> list[tuple[str, float, float, str]]:
  """(figure, value, bound, goal): each figure must be at most its bound."""
  found = [(f"GED S={s}", f[f"ged_{s}"], 1.03 * f[f"floor_ged_{s}"],
            f"<= 1.03 x floor {f[f'floor_ged_{s}']:.3f}")
           for s in (16, 100) if f"ged_{s}" in f and f"floor_ged_{s}" in f]
  if "nll" in f:
    found.append(("-log p(y|x)", f["nll"], f["ideal_nll"] + 0.5,
                  f"<= ideal {f['ideal_nll']:.2f} + 0.5 nat"))
  if "mode_tv_pooled" in f:
    found += [("mode TV, pooled", f["mode_tv_pooled"], 0.03, "<= 0.03"),
              ("unmatched", f["unmatched"], 0.02, "<= 0.02"),
              ("mode TV per image", f["mode_tv"], f["ideal_mode_tv"] + 0.03,
               f"<= truth's own {f['ideal_mode_tv']:.3f} + 0.03")]
  return found


def goal_table(records: list[dict]) -> list[str]:
  """Each model's distance to each goal ("yes" where it is reached)."""
  if not records or "floor_ged_16" not in records[0]["test"]:
    return []
  by_model = {r["model"]: {name: (value, bound) for name, value, bound, _ in
                           goals(r["test"])} for r in records}
  rows = [[name, text, *(
      "n/a" if name not in by_model[r["model"]] else
      (lambda v, b: f"{v:.3f} yes" if v <= b else f"{v:.3f} (+{v - b:.3f})")(
          *by_model[r["model"]][name]) for r in records)]
          for name, _, _, text in goals(records[-1]["test"])]
  return _table(["figure", "goal", *(LABELS[r["model"]] for r in records)], rows)


def mode_table(records: list[dict]) -> list[str]:
  """The share of samples assigned to each candidate, mean over images."""
  prefix = "true_mode_frequency_"
  truth = next((r["test"] for r in records if any(
      k.startswith(prefix) for k in r["test"])), None)
  if truth is None:
    return []
  names = [k[len(prefix):] for k in truth if k.startswith(prefix)]
  return _table(["candidate", "true", *(LABELS[r["model"]] for r in records)], [
      ["unmatched" if name == "none" else name.replace("_", " "),
       f"{truth[prefix + name]:.3f}",
       *(_frequency(r["test"], name) for r in records)] for name in names])


def _frequency(figures: dict, name: str) -> str:
  """mode_frequency_<name>; rows recorded before the evaluator called the
  unmatched share "unmatched" call it "none"."""
  for key in (name, *{"none": ("unmatched",), "unmatched": ("none",)}.get(name, ())):
    if f"mode_frequency_{key}" in figures:
      return _value(figures, f"mode_frequency_{key}")
  return "n/a"


TITLES = {"constant": "The constant set (the same grader distribution for every image)",
          "image_dependent": "The image-dependent set (the distribution set by the "
                             "digits' classes)"}


def set_table(records: list[dict]) -> str:
  """Samples (the model rows, then the true distribution's: sampled like a
  model, "ideal", its exact expected GED, the floor, and the best
  x-independent distribution's); likelihood and calibration; mode
  frequencies; training; the goals, each model's distance to each."""
  truth = max((r["test"] for r in records), key=len)  # The newest evaluators'.
  parts = [("Samples (d = 1 - IoU)", sample_table(records, truth)),
           ("Likelihood and calibration", likelihood_table(records, truth)),
           ("Sampled mode frequencies (mean over images)", mode_table(records)),
           ("Training", training_table(records)),
           ("Goals", goal_table(records))]
  text = "\n\n".join(f"**{title}**\n\n" + "\n".join(lines)
                      for title, lines in parts if lines)
  graders = _mean_std(truth, "graders_diversity")
  return (text + f"\n\nGraders' own diversity E[d(Y, Y')]: {graders}; "
          f"{records[0]['num_test_images']} test images, mean ± std over "
          "images; n/a: undefined (the unbiased GED at S = 1 has no pairs of "
          "distinct samples; S_NCC of samples that never vary) or not measured "
          "by that row's run.\n")


def markdown_table(records: list[dict]) -> str:
  """One `set_table` per set."""
  return "\n".join(f"### {TITLES[name]}\n\n" + set_table(rows)
                   for name in SETS
                   if (rows := [r for r in records if _set(r) == name]))


def save_curves(records: list[dict], path: Path) -> None:
  """Every row's validation curves, the floor and the ideal dashed."""
  from cvae_jax import plotting  # pylint: disable=g-import-not-at-top
  curves, floors = {}, {}
  for metric, floor in zip(CURVES, ("validation_floor_ged", "validation_ideal_nll")):
    curves[metric] = {LABELS[r["model"]]: tuple(np.asarray(r["curves"][metric]).T)
                      for r in records if metric in r.get("curves", {})}
    for r in records:
      if floor in r.get("curves", {}):
        floors[metric] = r["curves"][floor][-1][1]
  if any(curves.values()):
    plotting.save_curves({k: v for k, v in curves.items() if v}, path, floors)


def save_ged_curves(records: list[dict], path: Path) -> None:
  """GED against S, as the literature computes it (i = j pairs) and unbiased,
  for each row and the true distribution (its exact floor, dashed)."""
  from cvae_jax import plotting  # pylint: disable=g-import-not-at-top
  truth = max((r["test"] for r in records), key=len)
  curves = {"GED, i = j pairs included": {}, "GED, unbiased (i != j)": {}}
  for (panel, runs), key in zip(curves.items(), ("ged_{}", "ged_unbiased_{}")):
    for label, figures, prefix in [*((LABELS[r["model"]], r["test"], "")
                                     for r in records),
                                   ("true distribution, sampled", truth, "ideal_")]:
      counts = [s for s in records[0]["ged_samples"]
                if prefix + key.format(s) in figures]
      if counts:
        runs[label] = (counts, [figures[prefix + key.format(s)] for s in counts])
    counts = [s for s in records[0]["ged_samples"] if f"floor_ged_{s}" in truth]
    if panel.startswith("GED, i = j") and counts:
      runs["floor (exact)"] = (counts, [truth[f"floor_ged_{s}"] for s in counts])
  floors = ({"GED, unbiased (i != j)": truth["floor_ged_unbiased"]}
            if "floor_ged_unbiased" in truth else None)
  if any(curves.values()):
    plotting.save_curves({k: v for k, v in curves.items() if v}, path, floors,
                         x_label="samples per image S", log_x=True)


def main(argv):
  del argv
  rows = [("constant", m) for m in _MODELS.value] + [
      ("image_dependent", m) for m in _DEPENDENT.value]
  output, ordered = _TABLE.run_table(
      lambda r: (_set(r), r["model"]),
      [(row, functools.partial(run_row, *row)) for row in rows],
      lambda r: (SETS.index(_set(r)), ORDER.index(r["model"])), markdown_table)
  for picture in ("panel", "modes"):
    path = workdir_of("prob_unet") / f"{picture}.png"
    if path.exists():
      shutil.copyfile(path, output.parent / f"prob_unet_{picture}.png")
  save_curves([r for r in ordered if _set(r) == "constant"],
              output.parent / "prob_unet_curves.png")
  for name in SETS:
    rows = [r for r in ordered if _set(r) == name]
    if rows:
      save_ged_curves(rows, output.parent / f"prob_unet_ged_by_samples_{name}.png")


if __name__ == "__main__":
  harness.run(main)
