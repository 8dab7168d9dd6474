"""cvae_jax.runner, once for every task spec: a run, a rerun of the finished
run (nothing recomputed), a rerun with one evaluator's setting changed (the
saved figures; `runner.evaluate` recomputes only that evaluator's, no
training), a resume to more epochs, and SIGTERM mid-training (a checkpoint,
no results, the rerun resumes)."""

import json
import os
import re
import signal
import threading
import time

import numpy as np
import pytest

from cvae_jax import runner
from cvae_jax.errors import Interrupted
from cvae_jax.tasks import bbox, mnist_label, prob_unet, mnist_quadrant, segmentation
from helpers import (tiny_box_config, tiny_prob_unet_config, tiny_quadrant_config,
                     tiny_segmentation_config)
from train.configs import mnist_label as label_config
from train.configs import mnist_quadrant as quadrant_config


def _segmentation(data_dir):
  config = tiny_segmentation_config(
      model="cvae", data_dir=str(data_dir), download=False, validation_size=100,
      image_size=32, num_epochs=1)
  config.data.update(max_train_examples=32, max_eval_examples=16)
  return config, ("eval.num_samples", 8), {"prior_monte_carlo", "importance_sampled"}


def _prob_unet(data_dir):
  config = tiny_prob_unet_config(model="prob_unet", data_dir=str(data_dir),
                                 download=False, validation_size=100)
  config.data.update(max_train_examples=32, max_eval_examples=8)
  return config, ("eval.hungarian_samples", 2), {"samples"}


def _bbox(data_dir):
  config = tiny_box_config(model="cvae", data_dir=str(data_dir),
                           download=False, validation_size=100)
  config.data.update(max_train_examples=32, max_eval_examples=16)
  return config, ("eval.num_samples", 8), {"importance_sampled"}


def _quadrant(data_dir):
  config = tiny_quadrant_config(
      quadrant_config.get_config(), data_dir, model="cvae", num_epochs=1,
      baseline_training="joint")
  return config, ("eval.elbo_samples", 3), {"negative_elbo"}


def _label(data_dir):
  config = label_config.get_config()
  config.update(num_epochs=1, data_dir=str(data_dir), download=False,
                importance_samples=20, importance_chunk_size=10,
                steps_per_dispatch=4, checkpoint_every_steps=4, log_every_steps=4,
                eval_batch_size=50, sample_columns=3)
  return config, ("importance_samples", 40), {"importance_sampled"}


TASKS = {"mnist_label": (mnist_label, _label),
         "segmentation": (segmentation, _segmentation),
         "prob_unet": (prob_unet, _prob_unet),
         "bbox": (bbox, _bbox),
         "mnist_quadrant": (mnist_quadrant, _quadrant)}


def _trained(out: str, epoch: int) -> bool:
  """Whether the log shows a step of `epoch` ("epoch 1 [" or the label
  task's "Train Epoch: 1 [")."""
  return re.search(rf"(?i)epoch:? {epoch} \[", out) is not None


def _set(config, dotted: str, value) -> None:
  *path, last = dotted.split(".")
  for part in path:
    config = config[part]
  config[last] = value


@pytest.mark.parametrize("name", list(TASKS))
def test_run_rerun_changed_evaluator_and_resume(name, tmp_path, tiny_mnist_dir, capsys):
  module, make = TASKS[name]
  config, (key, value), changed = make(tiny_mnist_dir)
  workdir = tmp_path / name
  first = module.train_and_evaluate(config, workdir)
  saved = json.loads((workdir / "results.json").read_text())
  assert saved["test"] == first["test"]
  assert all(np.isfinite(v) for v in first["test"].values())
  # Every figure belongs to exactly one evaluator, named in results.json.
  owned = [k for names in first["figures_by_evaluator"].values() for k in names]
  assert sorted(owned) == sorted(first["test"])

  # A finished run: its figures, nothing trained, evaluated or written.
  before = {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}
  capsys.readouterr()
  again = module.train_and_evaluate(config, workdir)
  out = capsys.readouterr().out
  assert "holds a finished run of this config" in out and not _trained(out, 0)
  assert again["test"] == first["test"]
  assert before == {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}

  # An evaluation setting changed: the saved figures, and the command that
  # evaluates again; runner.evaluate reruns the named evaluators only.
  _set(config, key, value)
  unchanged = module.train_and_evaluate(config, workdir)
  out = capsys.readouterr().out
  assert "evaluation settings differ" in out and "cvae_jax.evaluate" in out
  assert unchanged["test"] == first["test"] and not _trained(out, 0)
  second = runner.evaluate(module.TASK, config, workdir, sorted(changed))
  out = capsys.readouterr().out
  assert not _trained(out, 0)
  rerun = {f for e in changed for f in second["figures_by_evaluator"][e]}
  for figure, old in first["test"].items():
    if figure not in rerun:
      assert second["test"][figure] == old, figure
  assert any(second["test"][f] != first["test"][f] for f in rerun & set(first["test"]))
  for evaluator, seconds in first["eval_seconds"].items():
    assert (second["eval_seconds"][evaluator] != seconds) == (
        evaluator in changed), evaluator
  assert second["train_seconds_this_run"] == first["train_seconds_this_run"]
  assert json.loads((workdir / "results.json").read_text())["test"] == second["test"]
  # Now a finished run of the changed config.
  assert module.train_and_evaluate(config, workdir)["test"] == second["test"]
  assert "holds a finished run of this config" in capsys.readouterr().out

  # More epochs: training resumes from the last checkpoint, then evaluates all.
  config.num_epochs += 1
  third = module.train_and_evaluate(config, workdir)
  out = capsys.readouterr().out
  assert "resumed from checkpoint" in out and _trained(out, 1)
  assert third["steps_trained"] == 2 * first["steps_trained"]
  assert third["steps"] in (first["steps"], third["steps_trained"])  # The best epoch's.


@pytest.mark.parametrize("name", list(TASKS))
def test_sigterm_saves_a_checkpoint_writes_no_results_and_the_rerun_resumes(
    name, tmp_path, tiny_mnist_dir, capsys):
  module, make = TASKS[name]
  config, _, _ = make(tiny_mnist_dir)
  config.num_epochs = 1000  # Signalled long before the end.
  if "early_stopping_patience" in config:
    config.early_stopping_patience = 1000
  config.steps_per_dispatch = config.checkpoint_every_steps = 2
  workdir = tmp_path / name
  checkpoints = workdir / "checkpoints"

  def checkpoint_after(step):
    return lambda: checkpoints.is_dir() and any(
        p.name.isdigit() and int(p.name) > step for p in checkpoints.iterdir())

  with pytest.raises(Interrupted) as interrupted:
    _run_then_sigterm(module, config, workdir, checkpoint_after(-1))
  assert interrupted.value.signum == signal.SIGTERM
  assert interrupted.value.exit_code == 143
  assert (checkpoints / str(interrupted.value.step)).is_dir()
  assert not (workdir / "results.json").exists()

  # The rerun resumes from that checkpoint (and is stopped again).
  capsys.readouterr()
  first_step = interrupted.value.step
  with pytest.raises(Interrupted) as again:
    _run_then_sigterm(module, config, workdir, checkpoint_after(first_step))
  assert (f"resumed from checkpoint of step {first_step}"
          in capsys.readouterr().out)
  assert again.value.step > first_step


def _run_then_sigterm(module, config, workdir, ready) -> None:
  """Runs the task while a thread sends this process SIGTERM once `ready()`
  holds (a checkpoint is there, so the trainer's handler is installed)."""
  done = threading.Event()  # The run ended: no handler left to catch it.

  def watch():
    while not done.is_set():
      if ready():
        os.kill(os.getpid(), signal.SIGTERM)
        return
      time.sleep(0.01)

  watcher = threading.Thread(target=watch, daemon=True)
  watcher.start()
  try:
    module.train_and_evaluate(config, workdir)
  finally:
    done.set()
    watcher.join()


def test_the_runner_names_every_random_stream():
  assert set(runner.RNG_STREAMS) == {"validation", "test", "pictures"}
  assert len(set(runner.RNG_STREAMS.values())) == len(runner.RNG_STREAMS)


def test_a_task_is_an_explicit_spec():
  for module in (bbox, mnist_label, prob_unet, mnist_quadrant, segmentation):
    assert isinstance(module.TASK, runner.Task)
    assert module.TASK.validate is module.validate
  assert segmentation.TASK.test_streams == 4
  assert mnist_label.TASK.test_streams == 1  # The field's default.
  fields = {f: getattr(bbox.TASK, f) for f in (
      "name", "validate", "make_model", "load_splits", "objective",
      "training_batch", "evaluation_batch", "run_identity", "evaluators",
      "evals", "header", "units")}
  with pytest.raises(TypeError, match="evaluater"):  # A misspelt field.
    runner.Task(**fields, evaluater=None)
  with pytest.raises(TypeError, match="units"):  # A missing one.
    runner.Task(**{k: v for k, v in fields.items() if k != "units"})
  with pytest.raises(TypeError, match="needs an objective"):  # No loss at all.
    runner.Task(**{k: v for k, v in fields.items() if k != "objective"})
