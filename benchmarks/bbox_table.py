"""The README's bounding-box table: regressor, MDN, CVAE and hybrid on the
offline MNIST box set under both conditions, the MDN also with the CVAE's
fixed std and the CVAE with a learned std; each row is `python -m train.bbox`
with the overrides of its label (ROWS).

  python -m benchmarks.bbox_table            # the full table
  python -m benchmarks.bbox_table --quick    # tiny: checks the pipeline

Runs and records as `harness` says; the boxes.png of some rows goes next to
the table (bbox_samples_<condition>_<row>.png).
"""

import shutil

from benchmarks import harness
from cvae_jax.tasks import bbox
from train.configs import bbox as bbox_config

_TABLE = harness.define_table_flags(
    "bbox_table", "1 epoch on 256 canvases, S=10.")
_CONDITIONS = harness.define_list("conditions", list(bbox.CONDITIONS),
                                  "Conditions, one table part each.", bbox.CONDITIONS)

# Row label -> config overrides.
ROWS = {
    "regressor": {"model": "regressor"},
    "mdn (5 components)": {"model": "mdn"},
    "mdn, fixed std": {"model": "mdn", "network.mdn_box_std": 0.02},
    "cvae": {"model": "cvae"},
    "hybrid": {"model": "hybrid"},
}
ABLATION_ROWS = {  # The "image" condition only.
    "cvae, learned std": {"model": "cvae", "network.cvae_box_std": 0.0},
}
# The rows (workdir names) whose boxes.png goes next to the table.
FIGURE_ROWS = ("cvae", "mdn_fixed_std", "regressor")
COLUMNS = (("best_of_1_iou", "best-of-1 IoU"), ("best_of_5_iou", "best-of-5 IoU"),
           ("best_of_20_iou", "best-of-20 IoU"), ("coverage_at_20", "coverage K=20"),
           ("precision_at_20", "precision K=20"), ("nll", "NLL (nats/box)"))


# What --quick changes (1 epoch on 256 canvases, S=10).
QUICK = {"num_epochs": 1, "data.max_train_examples": 256,
         "data.max_eval_examples": 64, "eval.num_samples": 10,
         "eval.num_images": 64, "eval.batch_size": 32, "log_every_steps": 4,
         "checkpoint_every_steps": 8}


def markdown_table(records: list[dict]) -> str:
  """One line per record, in the order given."""
  samples = records[0]["num_samples"]
  header = (["condition", "model"] + [name for _, name in COLUMNS]
            + ["valid boxes / canvas", "best epoch / cap", "wall time"])
  rows = []
  for r in records:
    figures = r["test"]
    cells = [f"{figures[key]:.3f}" for key, _ in COLUMNS[:-1]]
    cells.append(f"{figures['nll_exact']:.2f} (exact)" if "nll_exact" in figures
                 else f"{figures['nll_importance_sampled']:.2f} (IS, S={samples})")
    rows.append([r["condition"], r["row"], *cells, f"{figures['valid_boxes']:.2f}",
                 f"{r['best_epoch']} / {r['max_epochs']}",
                 f"{r['wall_seconds'] / 60:.1f} min"])
  return harness.markdown(header, rows)


def _sort_key(record: dict) -> tuple:
  labels = list(ROWS) + list(ABLATION_ROWS)
  return list(bbox.CONDITIONS).index(record["condition"]), labels.index(record["row"])


def main(argv):
  del argv
  rows = [({"condition": condition, "row": label}, condition, label,
           f"condition {condition}, {label}", {**overrides, "condition": condition})
          for condition in _CONDITIONS.value for label, overrides in {
              **ROWS, **(ABLATION_ROWS if condition == "image" else {})}.items()]
  output, _ = _TABLE.run_table(
      lambda r: (r["condition"], r["row"]),
      _TABLE.task_rows(bbox, bbox_config.get_config, QUICK, rows), _sort_key,
      markdown_table)
  for condition in _CONDITIONS.value:
    for name in FIGURE_ROWS:
      picture = _TABLE.workdir(condition, name) / "boxes.png"
      if picture.exists():
        shutil.copyfile(picture,
                        output.parent / f"bbox_samples_{condition}_{name}.png")


if __name__ == "__main__":
  harness.run(main)
