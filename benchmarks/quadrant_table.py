"""The README's quadrant-completion table: 2 protocols x 3 quadrant counts x
4 models, each trained by `train.mnist_quadrant`'s code, next to the Pyro
example's published numbers.

  python -m benchmarks.quadrant_table                 # the full table
  python -m benchmarks.quadrant_table --quick         # 1 epoch, few samples
  python -m benchmarks.quadrant_table --quadrants=1 --models=gsnn,hybrid \
      --gsnn_samples=10                               # multi-sample GSNN rows

Runs and records as `harness` says, with an epoch cap per protocol: a
finished run (or a recorded row) is reused only at the same cap, a run with
a lower cap resumes up to the new one. A GSNN or hybrid trained with S > 1
(--gsnn_samples) is an extra row, "gsnn (S=10)", in e.g. q1/gsnn_s10.
"""

import functools
import json
from absl import app

from benchmarks import harness
from cvae_jax import configs
from cvae_jax.tasks import mnist_quadrant
from train.configs import mnist_quadrant as pyro_config
from train.configs import mnist_quadrant_sohn as sohn_config

_TABLE = harness.define_table_flags(
    "quadrant_table", "1 epoch, S=10: checks the pipeline.")
_MAX_EPOCHS = harness.define_list(
    "max_epochs", ["30", "20"], "Cap on epochs per run, one per protocol (early "
    "stopping may end sooner; the configs' own cap is 101).")
_PROTOCOLS = harness.define_list("protocols", ["pyro", "sohn"], "Protocols.",
                                 ("pyro", "sohn"))
_QUADRANTS = harness.define_list("quadrants", ["1", "2", "3"], "Given quadrants.",
                                 (1, 2, 3))
_MODELS = harness.define_list("models", list(mnist_quadrant.MODEL_KINDS), "Models.",
                              mnist_quadrant.MODEL_KINDS)
_GSNN_SAMPLES = harness.define_list(
    "gsnn_samples", ["1"], "S of the GSNN objective for the gsnn and hybrid "
    "rows, one row per value (baseline and cvae rows ignore it).")

CONFIGS = {"pyro": pyro_config.get_config, "sohn": sohn_config.get_config}
# Pyro example README, negative ELBO (10 particles) on the test set, nats/image.
PYRO_PUBLISHED = {("baseline", 1): 100.4, ("baseline", 2): 61.9,
                  ("baseline", 3): 25.4, ("cvae", 1): 71.8, ("cvae", 2): 51.0,
                  ("cvae", 3): 24.2}
COLUMNS = ("prior_mean", "prior_monte_carlo", "importance_sampled",
           "importance_sampled_large", "negative_elbo")  # Figures, in order.


GSNN_KINDS = ("gsnn", "hybrid")  # The models whose objective has an S.


def _key(record: dict) -> tuple:
  return (record["protocol"], record["num_quadrants"], record["model"],
          record.get("gsnn_samples", 1))


def _label(record: dict) -> str:
  samples = record.get("gsnn_samples", 1)
  return record["model"] + (f" (S={samples})" if samples != 1 else "")


def _record(results: dict, wall_seconds: float) -> dict:
  """The figures of one run, as the JSON next to the table keeps them."""
  record = {k: results[k] for k in (
      "protocol", "num_quadrants", "model", "num_samples",
      "importance_sampled_large_num_images", "best_epoch")}
  record["test_negative_cll_nats_per_image"] = results["test"]
  record["seconds"] = results["eval_seconds"]
  if results["model"] in GSNN_KINDS:
    record["gsnn_samples"] = results.get("gsnn_samples", 1)
  return {**record, "wall_seconds": wall_seconds,
          "max_epochs": results["config"]["num_epochs"]}


# What --quick changes (1 epoch, S=10).
QUICK = {"num_epochs": 1, "eval.num_samples": 10, "eval.large_num_samples": 20,
         "eval.chunk_size": 10, "eval.elbo_samples": 2, "eval.large_num_images": 200}


def run_config(protocol: str, quadrants: int, model: str, max_epochs: int,
               recorded: dict | None, gsnn_samples: int = 1) -> dict:
  """Trains and evaluates one configuration (or reuses a finished run, or
  `recorded`, its row from an earlier table, when its workdir is gone)."""
  part = f"{protocol}/q{quadrants}"
  config = configs.with_overrides(CONFIGS[protocol](), {
      "model": model, "num_quadrants": quadrants, "gsnn_samples": gsnn_samples,
      "data_dir": _TABLE.data_dir.value, "num_epochs": max_epochs,
      "eval.large_num_images": 1000,  # Test images of the S=1000 estimate.
      "baseline_workdir": str(_TABLE.workdir(part, "baseline")),
      **(QUICK if _TABLE.quick.value else {})})
  workdir = _TABLE.workdir(part, model + (f"_s{gsnn_samples}" if gsnn_samples != 1 else ""))
  if (not workdir.exists() and recorded is not None and not _TABLE.rerun_recorded.value
      and recorded["max_epochs"] == config.num_epochs):
    return recorded
  results_path = workdir / "results.json"
  finished_cap = (json.loads(results_path.read_text())["config"]["num_epochs"]
                  if results_path.exists() else 0)
  if finished_cap > config.num_epochs:
    raise app.UsageError(f"{workdir} was trained with a cap of {finished_cap} "
                         f"epochs, above {config.num_epochs}; pass --max_epochs "
                         "at least that high or another --root")
  title = (f"{protocol} protocol, {quadrants} quadrant(s), "
           f"{_label({'model': model, 'gsnn_samples': gsnn_samples})}")
  results, spent = harness.timed_run(
      mnist_quadrant.train_and_evaluate, config, workdir, title,
      finished=lambda r: r["config"]["num_epochs"] == config.num_epochs and "test" in r)
  return _record(results, spent)


def _cell(value) -> str:
  return "" if value is None else f"{value:.2f}"


def markdown_table(rows: list[dict]) -> str:
  """One line per record, in the order given."""
  first, s = rows[0], rows[0]["num_samples"]
  header = ["protocol", "quadrants", "model", "(a) z=E[z|x]",
            f"(b) prior MC S={s['prior_monte_carlo']}", f"(c) IS S={s['importance_sampled']}",
            f"(c) IS S={s['importance_sampled_large']} "
            f"({first['importance_sampled_large_num_images']} images)",
            f"-ELBO ({s['negative_elbo']} samples)", "Pyro published (-ELBO)",
            "best epoch / cap", "wall time"]
  lines = []
  for r in rows:
    figures = r["test_negative_cll_nats_per_image"]
    if r["model"] == "baseline":  # Deterministic: every estimator is exact.
      cells = [_cell(figures["exact"])] * len(COLUMNS)
    else:
      cells = [_cell(figures[key]) if key in figures else "n/a" for key in COLUMNS]
    published = (PYRO_PUBLISHED.get((r["model"], r["num_quadrants"]))
                 if r["protocol"] == "pyro" else None)
    lines.append([r["protocol"], str(r["num_quadrants"]), _label(r), *cells,
                  _cell(published), f"{r['best_epoch']} / {r['max_epochs']}",
                  f"{r['wall_seconds'] / 60:.1f} min"])
  return harness.markdown(header, lines)


def _sort_key(record: dict) -> tuple:
  protocol, quadrants, model, samples = _key(record)
  return (list(CONFIGS).index(protocol), quadrants,
          list(mnist_quadrant.MODEL_KINDS).index(model), samples)


def main(argv):
  del argv
  if len(_MAX_EPOCHS.value) != len(_PROTOCOLS.value):
    raise SystemExit("error: --max_epochs needs one value per --protocols entry")
  # The baseline first: the CVAE-family runs reuse it, frozen.
  models = sorted(_MODELS.value, key=lambda m: m != "baseline")
  _TABLE.run_table(_key, [
      ((protocol, quadrants, model, samples), functools.partial(
          run_config, protocol, quadrants, model, max_epochs, gsnn_samples=samples))
      for protocol, max_epochs in zip(_PROTOCOLS.value, map(int, _MAX_EPOCHS.value))
      for quadrants in map(int, _QUADRANTS.value) for model in models
      for samples in (map(int, _GSNN_SAMPLES.value) if model in GSNN_KINDS else [1])],
                   _sort_key, markdown_table)


if __name__ == "__main__":
  harness.run(main)
