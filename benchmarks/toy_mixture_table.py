"""The toy with an exact likelihood: the library's estimates of -log p(y|x)
beside the truth, with and without KL warm-up, over seeds.

  python -m benchmarks.toy_mixture_table            # docs/toy_mixture_table.md
  python -m benchmarks.toy_mixture_table --quick    # tiny: checks the pipeline
  python -m benchmarks.toy_mixture_table --check_quadrature   # grid convergence

Each row trains `python -m train.toy_mixture` with its overrides at each
--seeds value (initialisation and data order), then reports per example,
mean over the test examples and then over seeds (min-max in brackets): the
true -log p(y|x), the model's own by quadrature over its 2-D latent, the
importance-sampled NLL, the prior Monte Carlo, the -ELBO; then how far the
model is from the truth, and each estimator from the model's exact figure.
"""

import numpy as np
from absl import flags, logging

from benchmarks import harness
from cvae_jax.tasks import toy_mixture
from train.configs import toy_mixture as toy_config

_TABLE = harness.define_table_flags(
    "toy_mixture_table", "2 epochs on 500 examples, K=16.")
_SEEDS = harness.define_list("seeds", ["0", "1", "2"], "Seeds of each row.", minimum=0)
_CHECK_QUADRATURE = flags.DEFINE_bool(
    "check_quadrature", False, "Only print the model's -log p(y|x) by quadrature "
    "at 64, 128 and 256 points per axis, for the first row's first seed (its "
    "workdir must be finished): how far the table's 128 are from converged.")

ROWS = {
    "constant KL weight": {},
    "KL warm-up (linear, 2,000 steps)": {"kl_schedule.name": "linear",
                                         "kl_schedule.warmup_steps": 2000},
    "cyclical KL (8 cycles of 2,500 steps)": {"kl_schedule.name": "cyclical",
                                              "kl_schedule.cycle_steps": 2500},
}
QUICK = {"num_epochs": 2, "data.train_size": 500, "data.test_size": 100,
         "eval.num_samples": 16, "eval.chunk_size": 16, "eval.elbo_samples": 2,
         "checkpoint_every_steps": 10}
COLUMNS = (("true_nll", "true -log p(y\\|x)"),
           ("model_nll_quadrature", "model's -log p(y\\|x), quadrature"),
           ("nll_importance_sampled", "IS-NLL (K=1000)"),
           ("nll_prior_monte_carlo", "prior MC (K=1000)"),
           ("negative_elbo", "-ELBO (10 z)"))


def _cell(values: list[float]) -> str:
  if len(values) == 1:
    return f"{values[0]:.3f}"
  return f"{np.mean(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def markdown_table(records: list[dict]) -> str:
  header = ["training", *(name for _, name in COLUMNS), "model - truth",
            "IS-NLL - model", "prior MC - model", "seeds", "epochs", "wall per run"]
  lines = []
  for label in ROWS:
    rows = [r for r in records if r["row"] == label]
    if rows:
      lines.append([label, *(_cell([r["test"][key] for r in rows]) for key, _ in COLUMNS),
                    *(_cell([r["test"][a] - r["test"][b] for r in rows]) for a, b in (
                        ("model_nll_quadrature", "true_nll"),
                        ("nll_importance_sampled", "model_nll_quadrature"),
                        ("nll_prior_monte_carlo", "model_nll_quadrature"))),
                    str(len(rows)), f"{rows[0]['max_epochs']} ({rows[0]['steps']:,} steps)",
                    f"{np.mean([r['wall_seconds'] for r in rows]):.0f} s"])
  return ("nats per example, mean over the test examples, then over seeds "
          "[min, max over seeds]; lower is better, the true -log p(y|x) is the "
          "floor on average.\n\n" + harness.markdown(header, lines))


def _sort_key(record: dict) -> tuple:
  return list(ROWS).index(record["row"]), record["seed"]


def check_quadrature() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from cvae_jax import estimators, evaluation, runner  # pylint: disable=g-import-not-at-top
  label, seed = next(iter(ROWS)), int(_SEEDS.value[0])
  restored = runner.restore(_TABLE.workdir(f"seed{seed}", label))
  model = toy_mixture.make_model(restored.config)
  test = toy_mixture.load_splits(restored.config)["test"]
  for points in (64, 128, 256):
    values = evaluation.map_over_batches(
        lambda p, a, r, n=points: -estimators.log_likelihood_by_quadrature(
            model, p, toy_mixture.objective_batch(a), n),
        restored.params, test, jax.random.PRNGKey(0), 100)
    print(f"{label}, seed {seed}: {points} x {points} points: model -log p(y|x) "
          f"{np.mean(values):.6f} nats per example", flush=True)


def main(argv):
  del argv
  if _CHECK_QUADRATURE.value:
    logging.set_verbosity(logging.WARNING)
    check_quadrature()
    return
  _TABLE.run_table(lambda r: (r["row"], r["seed"]), _TABLE.task_rows(
      toy_mixture, toy_config.get_config, QUICK, [
          ({"row": label, "seed": seed}, f"seed{seed}", label, f"{label}, seed {seed}",
           {**overrides, "seed": seed})
          for label, overrides in ROWS.items() for seed in map(int, _SEEDS.value)]),
                   _sort_key, markdown_table)


if __name__ == "__main__":
  harness.run(main)
