"""The README's ambiguous-segmentation table: the deterministic U-Net, Sohn
et al.'s conv CVAE and the Probabilistic U-Net on the offline MNIST set whose
grader distribution is known, beside that distribution's own figures (the
floor). Each row is `python -m train.prob_unet
--config=train/configs/prob_unet.py --config.model=<model>`.

  python -m benchmarks.prob_unet_table            # the full table
  python -m benchmarks.prob_unet_table --quick    # tiny: checks the pipeline

Finished runs in --root are reused (delete a workdir to redo it); an
interrupted run resumes; a row recorded in the JSON whose workdir is gone is
kept. Wall times add up in each workdir's wall_seconds.json. Writes the
markdown table to --output and the records as JSON next to it.
"""

import shutil
from pathlib import Path

from absl import app, flags, logging
import ml_collections

from benchmarks import harness
from cvae_jax.tasks import prob_unet
from train.configs import prob_unet as prob_unet_config

_TABLE = harness.define_table_flags(
    "prob_unet_table", "1 epoch on 256 images, S <= 16.", rerun_recorded=False)
_ROOT, _OUTPUT, _QUICK, _DATA_DIR = (_TABLE.root, _TABLE.output, _TABLE.quick,
                                     _TABLE.data_dir)
ORDER = ("unet", "sohn_cvae", "prob_unet")
_MODELS = flags.DEFINE_list("models", list(ORDER), "Rows to run.")

LABELS = {"unet": "deterministic U-Net", "sohn_cvae": "Sohn et al. conv CVAE",
          "prob_unet": "Probabilistic U-Net"}


def workdir_of(model: str) -> Path:
  return Path(_ROOT.value) / ("quick" if _QUICK.value else "") / model


def make_config(model: str) -> ml_collections.ConfigDict:
  config = prob_unet_config.get_config()
  config.model = model
  config.data_dir = _DATA_DIR.value
  if _QUICK.value:
    config.num_epochs = 1
    config.data.update(max_train_examples=256, max_eval_examples=64)
    config.eval.update(num_samples=16, chunk_size=16, ged_samples=(1, 4, 16))
    config.update(log_every_steps=4, checkpoint_every_steps=8)
    config.lr_schedule.warmup_steps, config.kl_schedule.warmup_steps = 2, 4
  return config


def run_row(model: str, recorded: dict | None) -> dict:
  """Trains and evaluates one model, or reuses its finished workdir, or
  `recorded` when the workdir is gone."""
  workdir = workdir_of(model)
  if not workdir.exists() and recorded is not None:
    return recorded
  results, spent = harness.timed_run(prob_unet.train_and_evaluate,
                                     make_config(model), workdir, LABELS[model])
  return {"model": model, "test": results["test"],
          "best_epoch": results["best_epoch"],
          "max_epochs": results["config"]["num_epochs"],
          "num_test_images": results["num_test_images"],
          "ged_samples": results["config"]["eval"]["ged_samples"],
          "hungarian_samples": results["config"]["eval"]["hungarian_samples"],
          "num_samples": results["config"]["eval"]["num_samples"],
          "wall_seconds": spent,
          "command": ("python -m train.prob_unet --config=train/configs/"
                      f"prob_unet.py --config.model={model}")}


def _mean_std(figures: dict, key: str) -> str:
  if key not in figures:
    return "n/a"
  return f"{figures[key]:.3f} ± {figures[key + '_std']:.3f}"


def markdown_table(records: list[dict]) -> str:
  """The model rows, then the true distribution's: sampled like a model
  ("ideal") and its exact expected GED ("floor")."""
  counts, matched = records[0]["ged_samples"], records[0]["hungarian_samples"]
  most = max(counts)
  header = (["model"] + [f"GED S={s}" for s in counts]
            + [f"diversity S={most}", f"Hungarian IoU S={matched}",
               "CE (nats/pixel)", "-log p(y|x) (nats/image)",
               "best epoch / cap", "wall time"])
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for r in records:
    f = r["test"]
    lines.append("| " + " | ".join(
        [LABELS[r["model"]]] + [_mean_std(f, f"ged_{s}") for s in counts]
        + [_mean_std(f, "samples_diversity"), _mean_std(f, "hungarian_iou"),
           f"{f['ce_per_pixel']:.4f}",
           f"{f['nll']:.2f}" + (" exact" if r["model"] == "unet" else
                                f" IS S={r['num_samples']}"),
           f"{r['best_epoch']} / {r['max_epochs']}",
           f"{r['wall_seconds'] / 60:.1f} min"]) + " |")
  f = next((r["test"] for r in records if "ideal_nll" in r["test"]),
           records[0]["test"])  # Any row: the same test images and draws.
  if "floor_ged_1" in f:
    lines.append("| " + " | ".join(
        ["true distribution, sampled"]
        + [_mean_std(f, f"ideal_ged_{s}") for s in counts]
        + [_mean_std(f, "ideal_samples_diversity"),
           _mean_std(f, "ideal_hungarian_iou"), "",
           f"{f['ideal_nll']:.2f} exact" if "ideal_nll" in f else "", "", ""]) + " |")
    lines.append("| " + " | ".join(
        ["true distribution, expected (floor)"]
        + [_mean_std(f, f"floor_ged_{s}") for s in counts]
        + ["", "", "", "", "", ""]) + " |")
  graders = _mean_std(f, "graders_diversity")
  return ("\n".join(lines) + f"\n\nGraders' own diversity E[d(Y, Y')]: {graders}; "
          f"{records[0]['num_test_images']} test images, mean ± std over "
          "images.\n")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  output = harness.output_path(_OUTPUT.value, _ROOT.value, _QUICK.value,
                               "prob_unet_table")
  records = harness.load_records(output, lambda r: r["model"])
  order = list(ORDER)
  for model in _MODELS.value:
    if model not in order:
      raise app.UsageError(f"--models: unknown model {model!r}; one of {order}")
    records[model] = run_row(model, records.get(model))
    ordered = harness.save(output, records, lambda r: order.index(r["model"]),
                           markdown_table)
  panel = workdir_of("prob_unet") / "panel.png"
  if panel.exists():
    shutil.copyfile(panel, output.parent / "prob_unet_panel.png")
  print(markdown_table(ordered))


if __name__ == "__main__":
  app.run(main)
