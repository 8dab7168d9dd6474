"""Quadrant completion end to end on a tiny TFDS MNIST: each model type trains
through the generic trainer and writes results.json and completions.png; a
pre-trained baseline stays frozen; a finished run is reported, not recomputed;
bad input is a one-line error."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np
import orbax.checkpoint as ocp
import pytest

from cvae_jax.errors import ConfigError
from cvae_jax.tasks import mnist_quadrant
from helpers import tiny_quadrant_config
from train.configs import mnist_quadrant as quadrant_config
from train.configs import mnist_quadrant_sohn

REPO = Path(__file__).resolve().parents[1]


def _best_params(workdir: Path) -> dict:
  manager = ocp.CheckpointManager((workdir / "best" / "checkpoints").absolute(),
                                  item_handlers=ocp.StandardCheckpointHandler())
  return manager.restore(manager.latest_step())["params"]


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory, tiny_mnist_dir):
  workdir = tmp_path_factory.mktemp("quadrant") / "baseline"
  results = mnist_quadrant.train_and_evaluate(
      tiny_quadrant_config(quadrant_config.get_config(), tiny_mnist_dir, model="baseline"),
      workdir)
  assert np.isfinite(results["test"]["exact"])
  return workdir


@pytest.mark.parametrize("model", ["cvae", "gsnn", "hybrid"])
def test_each_model_trains_and_reports_every_estimator(tmp_path, tiny_mnist_dir,
                                                       baseline_dir, model):
  config = tiny_quadrant_config(quadrant_config.get_config(), tiny_mnist_dir, model=model,
                                baseline_workdir=str(baseline_dir))
  results = mnist_quadrant.train_and_evaluate(config, tmp_path)
  figures = results["test"]
  expected = {"prior_mean", "prior_monte_carlo"}
  if model != "gsnn":
    expected |= {"importance_sampled", "importance_sampled_large", "negative_elbo"}
  assert set(figures) == expected
  assert all(np.isfinite(v) and v > 0 for v in figures.values()), figures
  assert json.loads((tmp_path / "results.json").read_text())["model"] == model
  # Inputs, truth, baseline, z=E[z|x], 3 samples; 4 images; 28 px + 2, x2.
  image = plt.imread(tmp_path / "completions.png")
  assert image.shape[:2] == (2 * (7 * 30 + 2), 2 * (4 * 30 + 2))
  # The pre-trained baseline is frozen: bitwise the baseline run's parameters.
  jax.tree.map(np.testing.assert_array_equal,
               _best_params(tmp_path)["params"]["baseline"],
               _best_params(baseline_dir)["params"])


def test_joint_baseline_trains_inside_the_cvae_on_the_sohn_protocol(
    tmp_path, tiny_mnist_dir):
  config = tiny_quadrant_config(mnist_quadrant_sohn.get_config(), tiny_mnist_dir,
                                baseline_training="joint", num_quadrants=2, num_epochs=1)
  results = mnist_quadrant.train_and_evaluate(config, tmp_path)
  assert not (tmp_path / "baseline").exists()  # Nothing pre-trained.
  assert results["test"]["importance_sampled"] > 0
  model = mnist_quadrant.make_model(config)
  x = np.zeros((1, 784), np.float32)
  initial = model.init(jax.random.split(jax.random.PRNGKey(config.seed), 3)[0], x, x)
  trained = _best_params(tmp_path)["params"]["baseline"]
  changed = jax.tree.leaves(jax.tree.map(
      lambda a, b: not np.allclose(a, b), initial["params"]["baseline"], trained))
  assert all(changed)


@pytest.mark.parametrize("overrides, message", [
    (dict(model="vae"), "model must be one of"),
    (dict(num_quadrants=4), "num_quadrants must be 1, 2 or 3"),
    (dict(hybrid_alpha=1.5), "hybrid_alpha must be in [0, 1]"),
    (dict(binarisation="otsu"), "binarisation must be one of"),
    (dict(validation_size=400), "validation_size must be between"),
])
def test_bad_config_is_a_config_error(tmp_path, tiny_mnist_dir, overrides, message):
  config = tiny_quadrant_config(quadrant_config.get_config(), tiny_mnist_dir, **overrides)
  with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
    mnist_quadrant.train_and_evaluate(config, tmp_path)


@pytest.mark.parametrize("model, overrides, network, message", [
    ("baseline", {}, dict(initialisation="glorot"), "network.initialisation must be"),
    ("cvae", {}, dict(baseline_to_generation=True, generation_sees_condition=False),
     "baseline_to_generation needs"),
    ("cvae", dict(optimizer="adamw"), {}, "frozen pre-trained baseline"),
])
def test_bad_network_or_optimiser_is_a_config_error(tmp_path, tiny_mnist_dir, model,
                                                     overrides, network, message):
  config = tiny_quadrant_config(quadrant_config.get_config(), tiny_mnist_dir, model=model,
                                **overrides)
  config.network.update(network)
  with pytest.raises(ConfigError, match=message):
    mnist_quadrant.train_and_evaluate(config, tmp_path)


def test_resuming_with_other_quadrants_is_refused(tmp_path, tiny_mnist_dir,
                                                  baseline_dir):
  # Same parameter shapes, other input pixels: resuming would mix two tasks.
  workdir = tmp_path / "baseline"
  shutil.copytree(baseline_dir, workdir)
  before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  config = tiny_quadrant_config(quadrant_config.get_config(), tiny_mnist_dir, model="baseline",
                                num_quadrants=3)
  with pytest.raises(ConfigError, match="num_quadrants 1 -> 3"):
    mnist_quadrant.train_and_evaluate(config, workdir)
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before


def test_without_early_stopping_the_last_epoch_is_evaluated(tmp_path,
                                                            tiny_mnist_dir):
  config = tiny_quadrant_config(quadrant_config.get_config(), tiny_mnist_dir, model="baseline",
                                num_epochs=1, early_stopping_metric="")
  results = mnist_quadrant.train_and_evaluate(config, tmp_path)
  assert results["best_epoch"] is None and results["steps"] == 300 // 20
  assert np.isfinite(results["test"]["exact"])


def test_command_line_error_is_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "train.mnist_quadrant",
       "--config=train/configs/mnist_quadrant.py", "--config.model=vae",
       f"--workdir={tmp_path}"], cwd=REPO, capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 2, result.stderr
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "--config.model" in errors[0], result.stderr
