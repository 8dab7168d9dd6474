"""The README's ambiguous-segmentation table: the deterministic U-Net, Sohn
et al.'s conv CVAE and the Probabilistic U-Net on the offline MNIST set whose
grader distribution is known, beside that distribution's own figures (the
floor); each row is `python -m train.prob_unet --config.model=<model>`.

  python -m benchmarks.prob_unet_table            # the full table
  python -m benchmarks.prob_unet_table --quick    # tiny: checks the pipeline

Runs and records as `harness` says, in ROOT/<model> (ROOT/quick/<model>
with --quick); a recorded row whose workdir is gone is always kept.
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
ORDER = ("unet", "sohn_cvae", "prob_unet")
_MODELS = harness.define_list("models", list(ORDER), "Rows to run.", ORDER)

LABELS = {"unet": "deterministic U-Net", "sohn_cvae": "Sohn et al. conv CVAE",
          "prob_unet": "Probabilistic U-Net"}


def workdir_of(model: str) -> Path:
  return Path(_TABLE.root.value) / ("quick" if _TABLE.quick.value else "") / model


# What --quick changes (1 epoch on 256 images, S <= 16).
QUICK = {"num_epochs": 1, "data.max_train_examples": 256, "data.max_eval_examples": 64,
         "eval.num_samples": 16, "eval.chunk_size": 16, "eval.ged_samples": (1, 4, 16),
         "log_every_steps": 4, "checkpoint_every_steps": 8,
         "lr_schedule.warmup_steps": 2, "kl_schedule.warmup_steps": 4}


def run_row(model: str, recorded: dict | None) -> dict:
  """Trains and evaluates one model, or reuses its finished workdir, or
  `recorded` when the workdir is gone."""
  workdir = workdir_of(model)
  if not workdir.exists() and recorded is not None:
    return recorded
  config = configs.with_overrides(prob_unet_config.get_config(), {
      "model": model, "data_dir": _TABLE.data_dir.value,
      **(QUICK if _TABLE.quick.value else {})})
  results, spent = harness.timed_run(prob_unet.train_and_evaluate, config, workdir,
                                     LABELS[model])
  config = results["config"]
  trained = hooks.steps_trained(hooks.read_history(workdir), results["steps"])
  images = config["data"]["max_train_examples"] or TRAIN_IMAGES
  return {"model": model, "test": results["test"], "best_epoch": results["best_epoch"],
          "selected_by": results_file.best_epoch(workdir)["metric"],
          "max_epochs": config["num_epochs"], "steps": trained,
          "epochs_trained": trained // (images // config["batch_size"]),
          "num_test_images": results["num_test_images"],
          "ged_samples": config["eval"]["ged_samples"],
          "hungarian_samples": config["eval"]["hungarian_samples"],
          "num_samples": config["eval"]["num_samples"],
          "curves": learning_curves(workdir), "wall_seconds": spent,
          "command": ("python -m train.prob_unet --config=train/configs/"
                      f"prob_unet.py --config.model={model}")}


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


def sample_table(records: list[dict], truth: dict) -> list[str]:
  counts = records[0]["ged_samples"]
  cells = lambda f, p="": [*(_mean_std(f, f"{p}ged_{s}") for s in counts),
                           _mean_std(f, p + "samples_diversity"),
                           _mean_std(f, p + "hungarian_iou")]
  rows = [[LABELS[r["model"]], *cells(r["test"])] for r in records]
  if "floor_ged_1" in truth:
    rows += [["true distribution, sampled", *cells(truth, "ideal_")],
             ["true distribution, expected (floor)",
              *(_mean_std(truth, f"floor_ged_{s}") for s in counts), "", ""]]
  return _table(["model", *(f"GED S={s}" for s in counts), f"diversity S={max(counts)}",
                 f"Hungarian IoU S={records[0]['hungarian_samples']}"], rows)


def likelihood_table(records: list[dict], truth: dict) -> list[str]:
  cells = lambda f, p="": [_value(f, p + "mode_tv_pooled"), _mean_std(f, p + "mode_tv"),
                           _value(f, p + "unmatched"), _value(f, p + "ece", 4),
                           _value(f, p + "variance_ncc")]
  rows = [[LABELS[r["model"]], _value(r["test"], "nll", 2) + (
      " exact" if r["model"] == "unet" else f" IS S={r['num_samples']}"),
           _value(r["test"], "ce_per_pixel", 4), *cells(r["test"]),
           _value(r["test"], "dice")] for r in records]
  if "ideal_nll" in truth:
    rows.append(["true distribution, sampled", _value(truth, "ideal_nll", 2) + " exact",
                 "", *cells(truth, "ideal_"), ""])
  return _table(["model", "-log p(y|x) (nats/image)", "CE (nats/pixel)",
                 "mode TV, pooled", "mode TV per image", "unmatched", "ECE", "S_NCC",
                 "Dice"], rows)


def training_table(records: list[dict]) -> list[str]:
  return _table(["model", "epochs trained / cap", "best epoch (by)", "steps", "wall time"], [
      [LABELS[r["model"]], f"{r.get('epochs_trained', 'n/a')} / {r['max_epochs']}",
       f"{r['best_epoch']} ({r.get('selected_by', 'validation_loss')})",
       f"{r.get('steps', 'n/a')}", f"{r['wall_seconds'] / 60:.1f} min"] for r in records])


def goal_table(record: dict) -> list[str]:
  """Issue 21's goals for the Probabilistic U-Net, each with its distance."""
  f = record["test"]
  if "floor_ged_16" not in f:
    return []
  goals = []
  for s in (16, 100):
    if f"ged_{s}" in f and f"floor_ged_{s}" in f:
      goals.append((f"GED S={s}", f[f"ged_{s}"], 1.1 * f[f"floor_ged_{s}"],
                    f"<= 1.1 x floor {f[f'floor_ged_{s}']:.3f}", "<="))
  goals.append(("Hungarian IoU", f["hungarian_iou"], f["ideal_hungarian_iou"] - 0.03,
                f">= true distribution's {f['ideal_hungarian_iou']:.3f} - 0.03", ">="))
  goals.append(("-log p(y|x)", f["nll"], f["ideal_nll"] + 1.0,
                f"<= ideal {f['ideal_nll']:.2f} + 1 nat", "<="))
  if "mode_tv_pooled" in f:
    goals.append(("mode TV, pooled", f["mode_tv_pooled"], 0.05, "<= 0.05", "<="))
  rows = []
  for name, value, target, text, sense in goals:
    met = value <= target if sense == "<=" else value >= target
    rows.append([name, f"{value:.3f}", text, "yes" if met else "no",
                 "" if met else f"{abs(value - target):.3f}"])
  return _table(["figure", "Probabilistic U-Net", "goal", "reached", "distance"], rows)


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
       *(_value(r["test"], f"mode_frequency_{name}") for r in records)] for name in names])


def markdown_table(records: list[dict]) -> str:
  """Samples (the model rows, then the true distribution's: sampled like a
  model, "ideal", and its exact expected GED, the floor); likelihood and
  calibration; mode frequencies; training; the goals."""
  truth = next((r["test"] for r in records if "ideal_nll" in r["test"]),
               records[0]["test"])  # Any row: the same test images and draws.
  prob_unet_row = next((r for r in records if r["model"] == "prob_unet"), None)
  parts = [("Samples (d = 1 - IoU)", sample_table(records, truth)),
           ("Likelihood and calibration", likelihood_table(records, truth)),
           ("Sampled mode frequencies (mean over images)", mode_table(records)),
           ("Training", training_table(records)),
           ("Goals (Probabilistic U-Net)",
            goal_table(prob_unet_row) if prob_unet_row else [])]
  text = "\n\n".join(f"**{title}**\n\n" + "\n".join(lines)
                      for title, lines in parts if lines)
  graders = _mean_std(truth, "graders_diversity")
  return (text + f"\n\nGraders' own diversity E[d(Y, Y')]: {graders}; "
          f"{records[0]['num_test_images']} test images, mean ± std over "
          "images.\n")


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


def main(argv):
  del argv
  output, ordered = _TABLE.run_table(
      lambda r: r["model"], [(model, functools.partial(run_row, model))
                             for model in _MODELS.value],
      lambda r: ORDER.index(r["model"]), markdown_table)
  for picture in ("panel", "modes"):
    path = workdir_of("prob_unet") / f"{picture}.png"
    if path.exists():
      shutil.copyfile(path, output.parent / f"prob_unet_{picture}.png")
  save_curves(ordered, output.parent / "prob_unet_curves.png")


if __name__ == "__main__":
  harness.run(main)
