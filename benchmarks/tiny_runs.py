"""Tiny runs of every example through its real command line, and their test
figures: a regression check that a change of the code changes no figure.

Each run is `python -m train.<example> ... --config.<key>=<value>` in its
own process, with overrides that make it take seconds; its figures are the
"test" dict of its results.json. Record them, then check changed code:

  python -m benchmarks.tiny_runs --workdir=/tmp/tiny_before \
      --write=benchmarks/tiny_runs_reference.json
  python -m benchmarks.tiny_runs --workdir=/tmp/tiny_after \
      --check=benchmarks/tiny_runs_reference.json [--rtol=1e-5]

--check prints every figure that differs by more than --rtol (relative),
is missing or new, and exits 1 if any differs. --runs=a,b runs only those
(`RUNS`; default `DEFAULT_RUNS`). --code_dir=DIR runs the commands in DIR
(e.g. a git worktree of another commit, to record its figures). Every run
needs a fresh directory under --workdir.
"""

import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

from absl import flags

from benchmarks import harness
from cvae_jax import cli

_WORKDIR = flags.DEFINE_string(
    "workdir", "/tmp/tiny_runs", "One workdir per run under it (each must not "
    "exist yet), and each run's log, <run>.log.")
_WRITE = flags.DEFINE_string(
    "write", None, "Write the figures, {run: {figure: value}}, as JSON here.")
_CHECK = flags.DEFINE_string(
    "check", None, "Compare the figures with this JSON (written by --write); "
    "exit 1 if any differs.")
_RTOL = flags.DEFINE_float("rtol", 1e-5, "Relative tolerance of --check.")
_CODE_DIR = flags.DEFINE_string(
    "code_dir", None, "The checkout whose code runs (the commands' working "
    "directory); default: this repository's root.")

REPO_ROOT = Path(__file__).resolve().parent.parent

# The image examples' shared overrides: one epoch on 256 training images, 64
# validation and test images of which 32 are evaluated.
SMALL_IMAGE_SET = {
    "num_epochs": 1, "data.max_train_examples": 256, "data.max_eval_examples": 64,
    "eval.num_images": 32, "log_every_steps": 4, "checkpoint_every_steps": 8}

EXAMPLE_OVERRIDES = {
    # All 60,000 training images (the task has no cap), K=10 on the test split.
    "mnist_label": {
        "num_epochs": 1, "importance_samples": 10, "importance_chunk_size": 10,
        "sample_columns": 2},
    # No cap either, smaller nets; a CVAE-family model first trains its
    # frozen baseline in <run>/baseline.
    "mnist_quadrant": {
        "num_epochs": 1, "eval.num_samples": 10, "eval.large_num_samples": 20,
        "eval.large_num_images": 200, "eval.chunk_size": 10,
        "eval.elbo_samples": 2, "eval.figure_images": 2,
        "eval.figure_samples": 2, "network.hidden_sizes": (128, 128),
        "network.latent_size": 16},
    "segmentation": {
        **SMALL_IMAGE_SET,
        "eval.num_samples": 10, "eval.chunk_size": 10, "eval.best_of": (1, 10),
        "eval.figure_images": 2, "eval.figure_samples": 2},
    "prob_unet": {
        **SMALL_IMAGE_SET,
        "eval.num_samples": 16, "eval.chunk_size": 16,
        "eval.ged_samples": (1, 4, 16), "eval.hungarian_samples": 4,
        "eval.validation_images": 32, "eval.validation_samples": 4,
        "eval.figure_images": 2, "eval.figure_samples": 2,
        "network.channels": (8, 16, 32), "network.convs_per_block": 2,
        "lr_schedule.warmup_steps": 2, "kl_schedule.warmup_steps": 4},
    "bbox": {
        **SMALL_IMAGE_SET,
        "eval.batch_size": 32, "eval.num_samples": 10, "eval.figure_images": 2},
    "toy_mixture": {
        "num_epochs": 1, "data.train_size": 2_000, "data.validation_size": 500,
        "data.test_size": 500, "eval.num_samples": 100, "eval.chunk_size": 100,
        "eval.figure_samples": 100, "eval.quadrature_points": 32,
        "lr_schedule.warmup_steps": 5},
}

# Run name -> (example, its own overrides beyond EXAMPLE_OVERRIDES[example]).
RUNS = {
    "mnist_label": ("mnist_label", {}),
    **{f"mnist_quadrant_{m}": ("mnist_quadrant", {"model": m})
       for m in ("baseline", "cvae", "gsnn", "hybrid")},
    **{f"segmentation_{m}": ("segmentation", {"model": m})
       for m in ("baseline", "cvae", "gsnn", "hybrid")},
    **{f"prob_unet_{m}": ("prob_unet", {"model": m})
       for m in ("unet", "prob_unet", "sohn_cvae")},
    **{f"bbox_{m}": ("bbox", {"model": m})
       for m in ("regressor", "mdn", "cvae", "hybrid")},
    "toy_mixture": ("toy_mixture", {}),
}

# Not run by default (--runs=all runs them): DEFAULT_RUNS has every objective.
EXTRA_RUNS = ("segmentation_gsnn", "segmentation_hybrid", "prob_unet_sohn_cvae",
              "bbox_hybrid")
DEFAULT_RUNS = tuple(r for r in RUNS if r not in EXTRA_RUNS)

_RUNS = harness.define_list(
    "runs", None, "Runs to do, by name, or 'all' for every run (default: "
    "DEFAULT_RUNS).", (*RUNS, "all"))


def command_of(run: str, workdir: Path) -> list[str]:
  """The run's command line (run in the code directory)."""
  example, own = RUNS[run]
  return [sys.executable, "-m", f"train.{example}",
          f"--config=train/configs/{example}.py", f"--workdir={workdir}",
          *(f"--config.{key}={value}"
            for key, value in {**EXAMPLE_OVERRIDES[example], **own}.items())]


def imported_package(code_dir: Path) -> str:
  """The cvae_jax file a command run in `code_dir` imports."""
  return subprocess.run(
      [sys.executable, "-c", "import cvae_jax; print(cvae_jax.__file__)"],
      cwd=code_dir, check=True, capture_output=True, text=True).stdout.strip()


def run_one(run: str, code_dir: Path,
            root: Path) -> tuple[dict | None, float, float]:
  """Runs `run`, its output to <root>/<run>.log; returns (its test figures,
  or None when the command failed; its wall and CPU seconds: on a shared
  machine the wall time grows with the others' load, the CPU time less)."""
  workdir = root / run
  command = command_of(run, workdir)
  print("+", " ".join(command[1:]), flush=True)
  log = root / f"{run}.log"
  children_cpu_seconds = lambda: sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
  begin, cpu_begin = time.time(), children_cpu_seconds()
  with log.open("w") as out:
    returncode = subprocess.run(command, cwd=code_dir, stdout=out,
                                stderr=subprocess.STDOUT).returncode
  seconds, cpu = time.time() - begin, children_cpu_seconds() - cpu_begin
  if returncode:
    tail = log.read_text().splitlines()[-5:]
    print(f"{run}: FAILED (exit {returncode}) after {seconds:.1f} s; the end "
          f"of {log}:\n  " + "\n  ".join(tail), flush=True)
    return None, seconds, cpu
  results = json.loads((workdir / "results.json").read_text())
  return {k: float(v) for k, v in results["test"].items()}, seconds, cpu


def differences(new: dict, reference: dict, rtol: float) -> list[str]:
  """One line per figure of one run that differs, is missing or is new."""
  lines = []
  for name in sorted(set(new) | set(reference)):
    if name not in new:
      lines.append(f"  {name}: missing (reference {reference[name]!r})")
    elif name not in reference:
      lines.append(f"  {name}: new ({new[name]!r}), not in the reference")
    elif not (math.isclose(new[name], reference[name], rel_tol=rtol)
              or math.isnan(new[name]) and math.isnan(reference[name])):
      old = reference[name]
      relative = abs(new[name] - old) / max(abs(new[name]), abs(old))
      lines.append(f"  {name}: {new[name]!r} vs reference {old!r} "
                   f"(relative difference {relative:.3g})")
  return lines


def check(figures: dict, reference: dict, rtol: float) -> bool:
  """Prints each run's differences from `reference`; True if none."""
  same = True
  for run, new in figures.items():
    lines = (differences(new, reference[run], rtol) if run in reference
             else ["  not in the reference"])
    print(f"{run}: " + (f"{len(lines)} figure(s) differ" if lines
                        else f"all {len(new)} figures match"), *lines, sep="\n", flush=True)
    same = same and not lines
  unchecked = sorted(set(reference) - set(figures))
  if unchecked:
    print(f"in the reference but not run: {', '.join(unchecked)}", flush=True)
  return same


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  runs = list(RUNS) if "all" in (_RUNS.value or ()) else list(_RUNS.value or DEFAULT_RUNS)
  reference = json.loads(Path(_CHECK.value).read_text()) if _CHECK.value else None
  code_dir = Path(_CODE_DIR.value or REPO_ROOT).expanduser().absolute()
  root = Path(_WORKDIR.value).expanduser().absolute()
  taken = [r for r in runs if (root / r).exists()]
  if taken:
    cli.fail(f"{root} already holds run(s) {', '.join(taken)}; pass a new "
             "--workdir or remove them")
  package = imported_package(code_dir)
  if not Path(package).resolve().is_relative_to(code_dir.resolve()):
    cli.fail(f"a command run in {code_dir} imports {package}, not that "
             "directory's cvae_jax (PYTHONPATH?)")
  root.mkdir(parents=True, exist_ok=True)
  print(f"code: {code_dir} (imports {package}); workdirs under {root}", flush=True)

  figures, failed, seconds, cpu = {}, [], {}, {}
  start = time.time()
  for run in runs:
    values, seconds[run], cpu[run] = run_one(run, code_dir, root)
    if values is None:
      failed.append(run)
    else:
      figures[run] = values
      print(f"{run}: {len(values)} figures, {seconds[run]:.1f} s "
            f"(CPU {cpu[run]:.1f} s)", flush=True)
  total = time.time() - start
  print("\nwall time per run, s (CPU time): " + ", ".join(
      f"{r} {seconds[r]:.1f} ({cpu[r]:.1f})" for r in seconds)
        + f"; total {total:.1f} s (CPU {sum(cpu.values()):.1f} s)", flush=True)

  if failed:
    print(f"failed: {', '.join(failed)} (logs in {root})", flush=True)
  if _WRITE.value and failed:
    print(f"not writing {_WRITE.value}: some runs failed", flush=True)
  elif _WRITE.value:
    Path(_WRITE.value).write_text(json.dumps(figures, indent=1) + "\n")
    print(f"figures of {len(figures)} runs written to {_WRITE.value}", flush=True)
  same = reference is None or check(figures, reference, _RTOL.value)
  if reference is not None:
    print(f"check against {_CHECK.value} (rtol {_RTOL.value:g}): "
          + ("every figure matches" if same and not failed
             else "DIFFERENCES"), flush=True)
  if failed or not same:
    sys.exit(1)


if __name__ == "__main__":
  harness.run(main)
