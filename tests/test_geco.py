"""GECO: the multiplier follows its constraint, the loss weighs the
reconstruction by it, its state is checkpointed (a run killed and resumed
equals an uninterrupted one, on one device and four), and the runner wires
it for any CVAE objective."""

import os
import signal

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvae_jax import geco, objectives, runner
from cvae_jax.errors import ConfigError
from cvae_jax.tasks import prob_unet
from cvae_jax.training import InMemoryData, Interrupted, hooks, trainer
from cvae_jax.training.checkpointing import Checkpointer
from helpers import tiny_prob_unet_config
from helpers import TINY_LABEL_CVAE as MODEL, tiny_label_init as INIT_FN
from helpers import tiny_label_arrays as _arrays, tiny_trainer_config as _config


def test_the_multiplier_follows_the_constraint():
  constrained = geco.GECO(kappa=10.0, decay=0.5, rate=0.1)
  state = constrained.init()
  kl = jnp.asarray([1.0, 3.0])
  # Reconstruction 12 > kappa: C = 2, C / kappa = 0.2 starts the average;
  # lambda grows by exp(0.1 * 0.2).
  loss, state, metrics = constrained.loss(jnp.asarray([11.0, 13.0]), kl, state)
  np.testing.assert_allclose(loss, 2.0 + 1.0 * 2.0)
  np.testing.assert_allclose(metrics["geco_constraint"], 2.0)
  np.testing.assert_allclose(state["multiplier"], np.exp(0.02), rtol=1e-6)
  # Reconstruction 8: C / kappa = -0.2, the average 0.5 * 0.2 + 0.5 * -0.2 = 0.
  _, state, metrics = constrained.loss(jnp.asarray([8.0, 8.0]), kl, state)
  np.testing.assert_allclose(metrics["geco_multiplier"], np.exp(0.02), rtol=1e-6)
  np.testing.assert_allclose(state["multiplier"], np.exp(0.02), rtol=1e-6)
  # Again: the average -0.1, lambda shrinks by exp(-0.01).
  _, state, _ = constrained.loss(jnp.asarray([8.0, 8.0]), kl, state)
  np.testing.assert_allclose(state["constraint_average"], -0.1, rtol=1e-6)
  np.testing.assert_allclose(state["multiplier"], np.exp(0.01), rtol=1e-6)
  assert int(state["steps"]) == 3
  # Far from the bound (C / kappa = 99) a step is at most a factor exp(rate).
  far = constrained.loss(jnp.asarray([1000.0, 1000.0]), kl, constrained.init())[1]
  np.testing.assert_allclose(far["multiplier"], np.exp(0.1), rtol=1e-6)
  # The gradient reaches the reconstruction through lambda, the KL with weight 1.
  grads = jax.grad(lambda r, k: constrained.loss(r, k, state)[0], argnums=(0, 1))(
      jnp.asarray([5.0, 5.0]), kl)
  np.testing.assert_allclose(grads[0], [np.exp(0.01) / 2] * 2, rtol=1e-6)
  np.testing.assert_allclose(grads[1], [0.5, 0.5])


def test_impossible_settings_are_one_line():
  config = tiny_prob_unet_config()
  config.geco.update(enabled=True, decay=1.5)
  with pytest.raises(ConfigError, match="geco.decay") as error:
    geco.from_config(config)
  assert "\n" not in str(error.value)
  config.geco.decay = 0.9  # kappa is 0 by default: a bound must be given.
  with pytest.raises(ConfigError, match="geco.kappa"):
    geco.from_config(config)
  config.geco.update(enabled=True, decay=0.9, kappa=2.0)
  with pytest.raises(ConfigError, match="needs a CVAE") as error:
    geco.check_model(config, prob_unet.make_model(tiny_prob_unet_config(model="ssn")))
  assert "\n" not in str(error.value)
  config.geco.enabled = False
  assert geco.from_config(config) is None


CONSTRAINED = geco.GECO(kappa=400.0, decay=0.9, rate=0.05)


def _geco_loss(params, batch, rng, step, loss_state):
  del step
  terms = objectives.negative_elbo(MODEL, params, batch, rng)
  loss, next_state, metrics = CONSTRAINED.loss(terms.reconstruction, terms.kl,
                                               loss_state)
  return loss, (metrics, next_state)


def _train(workdir, devices=None, extra_hooks=()):
  config = _config()
  return trainer.train(config, workdir, INIT_FN, _geco_loss, InMemoryData(_arrays()),
                       hooks=[*hooks.standard(config), *extra_hooks],
                       devices=devices, loss_state=CONSTRAINED.init())


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path):
  uninterrupted = _train(tmp_path / "a")
  assert int(uninterrupted.loss_state["steps"]) == int(uninterrupted.step) == 12
  assert float(uninterrupted.loss_state["multiplier"]) != 1.0  # It moved.

  class KillAtStep7(hooks.Hook):
    def after_steps(self, steps, metrics):
      if any(p.step == 7 for p in steps):
        os.kill(os.getpid(), signal.SIGTERM)
  with pytest.raises(Interrupted):
    _train(tmp_path / "b", extra_hooks=[KillAtStep7()])
  assert Checkpointer(tmp_path / "b", 10).latest_step() == 8
  resumed = _train(tmp_path / "b")
  chex.assert_trees_all_equal(uninterrupted.loss_state, resumed.loss_state)
  chex.assert_trees_all_equal(uninterrupted.params, resumed.params)
  # Data-parallel: the constraint is the global batch's, so one device and
  # four give the same multiplier.
  one = _train(tmp_path / "one", devices=jax.local_devices()[:1])
  chex.assert_trees_all_close(one.loss_state, uninterrupted.loss_state, rtol=1e-5)


def test_the_runner_trains_a_cvae_under_geco(tiny_mnist_dir, tmp_path, capsys):
  config = tiny_prob_unet_config(model="prob_unet", data_dir=str(tiny_mnist_dir),
                                 download=False, validation_size=100)
  config.data.update(max_train_examples=32, max_eval_examples=8)
  config.geco.update(enabled=True, kappa=50.0, rate=0.1)
  config.num_epochs = 2
  results = runner.run(prob_unet.TASK, config, tmp_path)
  lines = [l for l in capsys.readouterr().out.splitlines() if "GECO multiplier" in l]
  multipliers = [l.split("GECO multiplier ")[1] for l in lines]
  assert len(multipliers) == 8 and len(set(multipliers)) > 1, lines
  assert results["config"]["geco"]["enabled"]
  # Resuming with other GECO settings is refused (the multiplier means another thing).
  config.geco.kappa = 10.0
  config.num_epochs = 3
  with pytest.raises(Exception, match="geco"):
    runner.run(prob_unet.TASK, config, tmp_path)
