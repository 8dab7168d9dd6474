"""The README's segmentation table: the offline MNIST set at several occlusion
levels x baseline / CVAE / GSNN / hybrid, with and without input omission
noise, and the multi-sample GSNN and hybrid; each row is
`python -m train.segmentation` with the overrides of its label (ROWS).

  python -m benchmarks.segmentation_table            # the full table
  python -m benchmarks.segmentation_table --quick    # tiny: checks the pipeline

Runs and records as `harness` says; one row's panel.png per occlusion level
goes next to the table.
"""

import shutil

from benchmarks import harness
from cvae_jax.tasks import segmentation
from train.configs import segmentation as segmentation_config

_TABLE = harness.define_table_flags(
    "segmentation_table", "1 epoch on 256 images, S=10.")
_OCCLUSIONS = harness.define_list("occlusions", ["0", "1", "2"],
                                  "Occlusion blocks per image, one table part each.",
                                  minimum=0)
_MULTI_SAMPLE_OCCLUSIONS = harness.define_list(
    "multi_sample_occlusions", ["2"],
    "Occlusion levels that also get the S=10 GSNN and hybrid rows.", minimum=0)

# Row label -> config overrides: every model, cvae and hybrid also with
# Sohn et al.'s input omission noise.
OMISSION = 0.4
ROWS = {}
for _kind in segmentation.MODEL_KINDS:
  ROWS[_kind] = {"model": _kind}
  if _kind in ("cvae", "hybrid"):
    ROWS[f"{_kind} + omission {OMISSION}"] = {"model": _kind,
                                              "input_omission_rate": OMISSION}
MULTI_SAMPLE_ROWS = {f"{kind} (S=10)": {"model": kind, "gsnn_samples": 10}
                     for kind in ("gsnn", "hybrid")}
FIGURE_ROW = "hybrid"  # Its panel.png goes next to the table, per occlusion level.
COLUMNS = (("pixel_error", "pixel error (%)"), ("iou", "IoU at E[z|x]"),
           ("best_of_10_iou", "best-of-10 IoU"), ("best_of_100_iou", "best-of-100 IoU"),
           ("nll_prior_monte_carlo", "(b) prior MC"),
           ("nll_importance_sampled", "(c) IS"))


# What --quick changes (1 epoch on 256 images, S=10).
QUICK = {"num_epochs": 1, "data.max_train_examples": 256,
         "data.max_eval_examples": 64, "eval.num_samples": 10,
         "eval.chunk_size": 10, "eval.best_of": (1, 10), "eval.batch_size": 32,
         "steps_per_dispatch": 4, "log_every_steps": 4,
         "checkpoint_every_steps": 8}


def _cell(figures: dict, key: str) -> str:
  if key not in figures:
    return "n/a"
  value = figures[key]
  return f"{100 * value:.2f}" if key == "pixel_error" else (
      f"{value:.3f}" if "iou" in key else f"{value:.2f}")


def markdown_table(records: list[dict]) -> str:
  """One line per record, in the order given."""
  samples = records[0]["num_samples"]
  header = (["occlusion blocks", "model"]
            + [name + (f" S={samples}" if key.startswith("nll") else "")
               for key, name in COLUMNS]
            + ["best epoch / cap", "wall time"])
  rows = []
  for r in records:
    figures = dict(r["test"])
    if r["row"] == "baseline":  # Deterministic: (b) and (c) are its exact NLL.
      figures.update(nll_prior_monte_carlo=figures["nll_exact"],
                     nll_importance_sampled=figures["nll_exact"])
    rows.append([str(r["occlusion_blocks"]), r["row"],
                 *(_cell(figures, key) for key, _ in COLUMNS),
                 f"{r['best_epoch']} / {r['max_epochs']}",
                 f"{r['wall_seconds'] / 60:.1f} min"])
  return harness.markdown(header, rows)


def _sort_key(record: dict) -> tuple:
  labels = list(ROWS) + list(MULTI_SAMPLE_ROWS)
  return record["occlusion_blocks"], labels.index(record["row"])


def main(argv):
  del argv
  occlusions = list(map(int, _OCCLUSIONS.value))
  rows = [({"occlusion_blocks": occlusion, "row": label}, f"occlusion{occlusion}", label,
           f"{occlusion} occlusion block(s), {label}",
           {**overrides, "occlusion.blocks": occlusion})
          for occlusion in occlusions for label, overrides in {
              **ROWS, **(MULTI_SAMPLE_ROWS if str(occlusion) in
                         _MULTI_SAMPLE_OCCLUSIONS.value else {})}.items()]
  output, _ = _TABLE.run_table(
      lambda r: (r["occlusion_blocks"], r["row"]),
      _TABLE.task_rows(segmentation, segmentation_config.get_config, QUICK, rows),
      _sort_key, markdown_table)
  for occlusion in occlusions:
    panel = _TABLE.workdir(f"occlusion{occlusion}", FIGURE_ROW) / "panel.png"
    if panel.exists():
      shutil.copyfile(panel, output.parent / f"segmentation_panel_occlusion{occlusion}.png")


if __name__ == "__main__":
  harness.run(main)
