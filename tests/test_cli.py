"""The entry points as a user runs them: one-line errors (answered before
TensorFlow is imported), quiet start-up, a finished workdir that is reported
rather than recomputed, exit codes 130 / 143 on SIGINT / SIGTERM, a corrupt
TFDS record file, and a run killed with SIGKILL that resumes to the same
result as an uninterrupted one."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Every train/<name>.py but the shared module, with train/configs/<name>.py.
ENTRY_POINTS = sorted(p.stem for p in (REPO / "train").glob("*.py")
                      if p.stem not in ("__init__", "entry"))
# Reports at exit whether the process imported TensorFlow.
_TF_PROBE = ("import atexit, runpy, sys; atexit.register(lambda: print("
             "'tensorflow imported:', 'tensorflow' in sys.modules, "
             "file=sys.stderr)); sys.argv[0] = {name!r}; "
             "runpy.run_module({name!r}, run_name='__main__')")


def _command(workdir, *overrides, entry_point="mnist_label", probe=False):
  module = f"train.{entry_point}"
  start = (["-c", _TF_PROBE.format(name=module)] if probe else ["-m", module])
  return [sys.executable, *start, f"--config=train/configs/{entry_point}.py",
          f"--workdir={workdir}", *overrides]


def _run(workdir, *overrides, **kwargs):
  return subprocess.run(_command(workdir, *overrides, **kwargs), cwd=REPO,
                        capture_output=True, text=True, timeout=600, env=_env())


def _env():
  # One CPU device, as a user's machine, whatever the test process uses; no
  # TF_CPP_MIN_LOG_LEVEL, which importing jax set to 1 in this process; and
  # stdout block-buffered, as it is for a user's pipe.
  env = dict(os.environ)
  for name in ("XLA_FLAGS", "TF_CPP_MIN_LOG_LEVEL", "PYTHONUNBUFFERED"):
    env.pop(name, None)
  return env


def _assert_one_line_error(result, expected):
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr
  lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and expected in lines[0], result.stderr


@pytest.mark.parametrize("override, expected", [
    ("--config.batch_size=0", "batch_size must be a positive integer"),
    ("--config.learning_rate=-0.001", "learning_rate must be positive"),
    ("--config.bogus=1", "unknown config key 'bogus'"),
    ("--config=train/configs/missing.py", "No such file or directory"),
    ("--config.num_epochs=1.5", "invalid literal for int()"),
])
def test_bad_input_is_one_line_error(tmp_path, override, expected):
  _assert_one_line_error(_run(tmp_path / "w", override), expected)


@pytest.mark.parametrize("entry_point, override, expected", [
    ("mnist_label", "--config.learnin_rate=0.1",
     "error: unknown config key 'learnin_rate' (did you mean 'learning_rate'?); "
     "the keys are in train/configs/mnist_label.py"),
    ("mnist_quadrant", "--config.eval.num_sample=3",
     "error: unknown config key 'eval.num_sample' (did you mean "
     "'eval.num_samples'?); the keys are in train/configs/mnist_quadrant.py"),
    ("mnist_quadrant", "--config.model.size=3",
     "error: unknown config key 'model.size' ('model' is a value, not a "
     "group); the keys are in train/configs/mnist_quadrant.py"),
])
def test_mistyped_key_is_exactly_one_clean_line(tmp_path, entry_point, override,
                                                expected):
  result = _run(tmp_path / "w", override, entry_point=entry_point)
  assert result.returncode == 2
  assert result.stderr == expected + "\n"


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_bad_value_is_answered_before_tensorflow_is_imported(tmp_path,
                                                             entry_point):
  result = _run(tmp_path / "w", "--config.batch_size=0", probe=True,
                entry_point=entry_point)
  assert result.returncode == 2, result.stderr
  assert result.stderr.splitlines() == [
      "error: batch_size must be a positive integer, got 0; set "
      "--config.batch_size", "tensorflow imported: False"]
  assert not (tmp_path / "w").exists()


def test_workdir_that_is_a_file_is_one_line_error(tmp_path):
  workdir = tmp_path / "a_file"
  workdir.write_text("keep me")
  _assert_one_line_error(_run(workdir), "is not a directory")
  assert workdir.read_text() == "keep me"


TINY = ("--config.num_epochs=3", "--config.importance_samples=20",
        "--config.importance_chunk_size=10", "--config.steps_per_dispatch=2",
        "--config.checkpoint_every_steps=4", "--config.log_every_steps=4",
        "--config.eval_batch_size=50", "--config.sample_columns=3")
# Runs long enough to be signalled mid-training (per entry point).
LONG = {
    "mnist_label": ("--config.num_epochs=1000", "--config.steps_per_dispatch=2",
                    "--config.checkpoint_every_steps=4"),
    "mnist_quadrant": ("--config.model=baseline", "--config.validation_size=100",
                       "--config.batch_size=20", "--config.num_epochs=1000",
                       "--config.early_stopping_patience=1000",
                       "--config.network.hidden_sizes=(16,16)",
                       "--config.steps_per_dispatch=2",
                       "--config.checkpoint_every_steps=4"),
}


@pytest.fixture(scope="module")
def tiny(tiny_mnist_dir):
  return (*TINY, f"--config.data_dir={tiny_mnist_dir}", "--config.download=False")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny):
  """A finished tiny run: (its workdir, its completed process)."""
  workdir = tmp_path_factory.mktemp("cli") / "reference"
  result = _run(workdir, *tiny)
  assert result.returncode == 0, result.stderr
  return workdir, result


def _snapshot(directory: Path) -> dict:
  """Relative path -> (size, mtime) of every file under `directory`."""
  return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
          for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_run_says_what_it_does_and_tensorflow_stays_quiet(reference):
  _, result = reference
  assert result.stderr == ""  # No TensorFlow / absl start-up lines.
  lines = result.stdout.splitlines()

  def first(prefix):
    return next(i for i, line in enumerate(lines) if line.startswith(prefix))
  assert (first("loading MNIST from ") < first("compiling the train step")
          < first("Train Epoch: 0 [0/400 (0%)]")
          < first("Train Epoch: 2 [320/400 (80%)]\tLoss: ")
          < first("(c) importance-sampled -log p(y|x), S=20, 100 test images...")
          < first("test set loss "))
  assert sum(line.startswith("====> Test set loss: ") for line in lines) == 3


def test_rerun_of_a_finished_workdir_reports_it_and_recomputes_nothing(
    tmp_path, reference, tiny):
  workdir = tmp_path / "finished"
  shutil.copytree(reference[0], workdir)
  before = _snapshot(workdir)
  result = _run(workdir, *tiny, probe=True)
  assert result.returncode == 0, result.stderr
  assert result.stderr == "tensorflow imported: False\n"  # No data was read.
  lines = result.stdout.splitlines()
  assert lines[0] == (f"{workdir} holds a finished run of this config: its "
                      "figures from results.json (nothing recomputed; a new "
                      "--workdir trains anew)")
  printed = reference[1].stdout.replace(str(reference[0]), str(workdir))
  assert lines[1:] == [printed.splitlines()[-1]]
  assert _snapshot(workdir) == before


def test_rerun_with_other_evaluation_settings_and_evaluate_again(
    tmp_path, reference, tiny):
  workdir = tmp_path / "finished"
  shutil.copytree(reference[0], workdir)
  before = _snapshot(workdir)
  result = _run(workdir, *tiny, "--config.importance_samples=40")
  assert result.returncode == 0, result.stderr
  assert (f"{workdir} holds a finished run; evaluation settings differ "
          "(importance_samples 20 -> 40): these are its saved figures. To "
          "evaluate it again with them: python -m cvae_jax.evaluate "
          f"--workdir={workdir}") in result.stdout
  assert "Train Epoch" not in result.stdout and _snapshot(workdir) == before

  result = subprocess.run(
      [sys.executable, "-m", "cvae_jax.evaluate", f"--workdir={workdir}",
       "--config.num_epochs=9"],
      cwd=REPO, capture_output=True, text=True, timeout=600, env=_env())
  assert result.returncode == 2 and result.stderr == (
      "error: --config.num_epochs changes training, not the evaluation; "
      "evaluate takes eval.*, evals, the task's evaluation settings and "
      "runtime keys such as data_dir (train anew with the task's command)\n")
  result = subprocess.run(
      [sys.executable, "-m", "cvae_jax.evaluate", f"--workdir={workdir}",
       "--evals=importance_sampled", "--config.importance_samples=40"],
      cwd=REPO, capture_output=True, text=True, timeout=600, env=_env())
  assert result.returncode == 0, result.stderr
  assert "Train Epoch" not in result.stdout
  assert ("(c) importance-sampled -log p(y|x), S=40, 100 test images..."
          in result.stdout)
  old = json.loads((reference[0] / "results.json").read_text())["test"]
  new_results = json.loads((workdir / "results.json").read_text())
  new = new_results["test"]
  assert new["test_loss_reference_unit"] == old["test_loss_reference_unit"]
  assert new["importance_sampled"] != old["importance_sampled"]
  assert (new_results["importance_samples"]
          == new_results["config"]["importance_samples"] == 40)
  assert new_results["estimators"]["importance_sampled"].endswith("S=40")
  after = _snapshot(workdir)
  for unchanged in ("samples.png", "reconstructions.png"):
    assert after[unchanged] == before[unchanged], unchanged
  for kept in ("checkpoints", "events.out.tfevents"):  # No step, no new file.
    assert ({k for k in after if k.startswith(kept)}
            == {k for k in before if k.startswith(kept)}), kept


def test_sigkill_then_rerun_equals_uninterrupted_run(tmp_path, reference, tiny):
  workdir = tmp_path / "killed"
  process = subprocess.Popen(_command(workdir, *tiny), cwd=REPO, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  checkpoint = workdir / "checkpoints" / "28"  # Mid-epoch 1 (20 steps each).
  deadline = time.time() + 300
  while not checkpoint.exists() and process.poll() is None:
    assert time.time() < deadline
    time.sleep(0.005)
  process.send_signal(signal.SIGKILL)
  assert process.wait() == -signal.SIGKILL, "the run ended before the kill"
  assert not (workdir / "results.json").exists()

  resumed = _run(workdir, *tiny)
  assert resumed.returncode == 0, resumed.stderr
  assert "resumed from checkpoint of step" in resumed.stdout
  expected = json.loads((reference[0] / "results.json").read_text())
  got = json.loads((workdir / "results.json").read_text())
  assert got["test"] == expected["test"]
  assert got["steps"] == expected["steps"]
  for picture in ("samples.png", "reconstructions.png"):
    assert (workdir / picture).stat().st_size > 0
