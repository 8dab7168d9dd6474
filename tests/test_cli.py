"""`python -m train.mnist_label` as a user runs it: one-line errors, and a run
killed with SIGKILL that resumes to the same result as an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _command(workdir, *overrides):
  return [sys.executable, "-m", "train.mnist_label",
          "--config=train/configs/mnist_label.py", f"--workdir={workdir}",
          *overrides]


def _run(workdir, *overrides):
  return subprocess.run(_command(workdir, *overrides), cwd=REPO, capture_output=True,
                        text=True, timeout=600, env=_env())


def _env():
  # One CPU device, as a user's machine, whatever the test process uses.
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
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


def test_workdir_that_is_a_file_is_one_line_error(tmp_path):
  workdir = tmp_path / "a_file"
  workdir.write_text("keep me")
  _assert_one_line_error(_run(workdir), "is not a directory")
  assert workdir.read_text() == "keep me"


TINY = ("--config.num_epochs=3", "--config.importance_samples=20",
        "--config.importance_chunk_size=10", "--config.steps_per_dispatch=2",
        "--config.checkpoint_every_steps=4", "--config.log_every_steps=4",
        "--config.eval_batch_size=50", "--config.sample_columns=3")


def test_sigkill_then_rerun_equals_uninterrupted_run(tmp_path, tiny_mnist_dir):
  tiny = (*TINY, f"--config.data_dir={tiny_mnist_dir}", "--config.download=False")
  reference = _run(tmp_path / "reference", *tiny)
  assert reference.returncode == 0, reference.stderr
  assert "Train Epoch: 2 [320/400 (80%)]\tLoss: " in reference.stdout

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
  expected = json.loads((tmp_path / "reference" / "results.json").read_text())
  got = json.loads((workdir / "results.json").read_text())
  for key in ("test_loss_reference_unit", "test_negative_elbo_nats_per_image",
              "test_importance_sampled_nll_nats_per_image", "steps"):
    assert got[key] == expected[key], key
  for picture in ("samples.png", "reconstructions.png"):
    assert (workdir / picture).stat().st_size > 0
