"""What a researcher building their own CVAE on the library relies on:
schedules and optax transformations in the trainer, a loss that sees the
step (KL warm-up), any distribution as the likelihood, sampling Gaussian and
mixture decoders, the model checker, restore and evaluate, honest resume,
trainer defaults, and a toy run that never imports TensorFlow."""

import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cvae_jax import (configs, distributions, estimators, evaluators, model_check,
                      objectives, runner, sampling, schedules)
from cvae_jax.distributions import DiagonalGaussian, GaussianMixture
from cvae_jax.errors import ConfigError
from cvae_jax.models.toy_mixture import ToyMixtureCVAE
from cvae_jax.tasks import toy_mixture
from cvae_jax.training import InMemoryData, hooks, optimizers, trainer
from helpers import tiny_toy_config

REPO = Path(__file__).resolve().parents[1]


def _trainer_config(**overrides):
  config = configs.trainer_defaults()
  config.update(dict(batch_size=4, num_epochs=1, log_every_steps=1,
                     log_metrics="last"))
  config.update(overrides)
  return config


def _linear_loss(params, batch, rng, step):
  """d loss / d params = 1 at every step: params fall by the learning rate."""
  del batch, rng, step
  return params, {}


def _constant_data(num):
  return InMemoryData({"x": np.zeros((num, 1), np.float32)})


def test_a_learning_rate_schedule_changes_the_rate_as_written(tmp_path):
  # SGD on a loss of slope 1: after n steps params = -sum of the first n rates.
  # Warm-up 0 -> 0.1 over 4 steps, then linear decay to 0.01 at step 10.
  config = _trainer_config(optimizer="sgd", learning_rate=0.1, num_epochs=10,
                           lr_schedule=configs.lr_schedule_config(
                               name="linear", warmup_steps=4, decay_steps=10,
                               end_factor=0.1))
  state = trainer.train(config, tmp_path, lambda rng: jnp.zeros(()), _linear_loss,
                        _constant_data(4))
  by_hand = [0.1 * t / 4 for t in range(4)] + [
      0.1 + (0.01 - 0.1) * (t - 4) / 6 for t in range(4, 10)]
  np.testing.assert_allclose(float(state.params), -sum(by_hand), rtol=1e-5)
  schedule = schedules.learning_rate(config, 10)
  np.testing.assert_allclose([schedule(t) for t in range(10)], by_hand, atol=1e-7)


def test_any_optax_transformation_can_be_passed(tmp_path):
  # Clipping to norm 0.5 halves the unit gradient: params = -0.5 * lr * steps.
  transform = optax.chain(optax.clip_by_global_norm(0.5), optax.sgd(0.2))
  state = trainer.train(_trainer_config(num_epochs=3), tmp_path,
                        lambda rng: jnp.zeros(()), _linear_loss, _constant_data(4),
                        optimizer=transform)
  np.testing.assert_allclose(float(state.params), -0.5 * 0.2 * 3, rtol=1e-6)
  # Gradient clipping from the config does the same.
  config = _trainer_config(num_epochs=3, optimizer="sgd", learning_rate=0.2,
                           gradient_clip_norm=0.5)
  state = trainer.train(config, tmp_path / "config", lambda rng: jnp.zeros(()),
                        _linear_loss, _constant_data(4))
  np.testing.assert_allclose(float(state.params), -0.5 * 0.2 * 3, rtol=1e-6)


@pytest.mark.parametrize("kl_schedule, expected", [
    (dict(name="constant"), [1, 1, 1, 1, 1, 1]),
    (dict(name="linear", warmup_steps=4), [0, 0.25, 0.5, 0.75, 1, 1]),
    (dict(name="cyclical", cycle_steps=3, ramp_fraction=0.5),
     [0, 2 / 3, 1, 0, 2 / 3, 1]),
])
def test_the_loss_sees_the_step_and_the_kl_weight_follows_its_schedule(
    tmp_path, kl_schedule, expected):
  config = _trainer_config(num_epochs=6, kl_schedule=configs.kl_schedule_config(
      **kl_schedule))
  weight_at = schedules.kl_weight(config)
  logged = []

  def loss_fn(params, batch, rng, step):
    return params * 0.0, {"weight": weight_at(step), "step": step}
  trainer.train(config, tmp_path, lambda rng: jnp.zeros(()), loss_fn,
                _constant_data(4),
                hooks=hooks.standard(config, report=lambda p, m: logged.append(m)))
  assert [m["step"] for m in logged] == list(range(6))
  np.testing.assert_allclose([m["weight"] for m in logged], expected, atol=1e-6)


def test_kl_weight_scales_only_the_kl_term():
  model = ToyMixtureCVAE(hidden_sizes=(8,))
  batch = {"condition": jnp.linspace(-1, 1, 6)[:, None],
           "target": jnp.ones((6, 2))}
  params = model.init(jax.random.PRNGKey(0), batch["target"], batch["condition"])
  outputs = objectives.forward(model, params, batch, jax.random.PRNGKey(1))
  full = objectives.negative_elbo_from_outputs(outputs, batch)
  warm = objectives.negative_elbo_from_outputs(outputs, batch, 0.25)
  chex.assert_trees_all_close(warm.loss, full.reconstruction + 0.25 * full.kl)
  chex.assert_trees_all_close(warm.kl, full.kl)


def test_log_lines_show_the_mean_since_the_previous_line(tmp_path):
  seen = []
  config = _trainer_config(num_epochs=1, log_every_steps=3, log_metrics="mean")
  trainer.train(config, tmp_path, lambda rng: jnp.zeros(()),
                lambda p, b, r, step: (p * 0.0, {"step": step.astype(jnp.float32)}),
                _constant_data(24), hooks=hooks.standard(
                    config, report=lambda p, m: seen.append((p.step, m["step"]))))
  # Lines at steps 0 and 3: the mean of steps {0} and {1, 2, 3}.
  assert seen == [(0, 0.0), (3, 2.0)]


class UserGaussian:
  """A user's own likelihood: log_prob(y), sample(seed, sample_shape), mean().
  Registered as a pytree so jit can return it, as distrax's are."""

  def __init__(self, loc, log_variance):
    self.loc, self.log_variance = loc, log_variance

  def log_prob(self, y):
    return jnp.sum(-0.5 * (jnp.log(2 * jnp.pi) + self.log_variance
                           + (y - self.loc) ** 2 * jnp.exp(-self.log_variance)), -1)

  def sample(self, seed, sample_shape=()):
    shape = (*sample_shape, *self.loc.shape)
    return self.loc + jnp.exp(0.5 * self.log_variance) * jax.random.normal(seed, shape)

  def mean(self):
    return self.loc


def _register_pytree(cls):
  jax.tree_util.register_pytree_node(
      cls, lambda d: ((d.loc, d.log_variance), None), lambda _, leaves: cls(*leaves))
  return cls


_register_pytree(UserGaussian)


class UserLikelihoodCVAE(ToyMixtureCVAE):
  def generation_from_features(self, z, x):
    gaussian = super().generation_from_features(z, x)
    return UserGaussian(gaussian.mean, gaussian.log_variance)


def test_a_users_distribution_works_through_the_objectives_and_estimators():
  # The same weights with the library's DiagonalGaussian and a user's class:
  # the -ELBO, the importance-sampled NLL and sampling agree exactly.
  ours, theirs = ToyMixtureCVAE(hidden_sizes=(8,)), UserLikelihoodCVAE(hidden_sizes=(8,))
  batch = {"condition": jnp.linspace(-1, 1, 5)[:, None],
           "target": jnp.linspace(-1, 1, 10).reshape(5, 2)}
  params = ours.init(jax.random.PRNGKey(0), batch["target"], batch["condition"])
  model_check.check_model(theirs, batch)
  rng = jax.random.PRNGKey(3)
  for fn in (lambda m: objectives.negative_elbo(m, params, batch, rng).loss,
             lambda m: estimators.cvae_log_likelihood(m, params, batch, rng, 64,
                                                      "recognition", 16)):
    chex.assert_trees_all_close(fn(ours), fn(theirs), rtol=1e-6)
  for draw in (False, True):
    chex.assert_trees_all_close(
        sampling.generate(ours, params, batch["condition"], rng, draw=draw),
        sampling.generate(theirs, params, batch["condition"], rng, draw=draw))
  with pytest.raises(ValueError, match="target_mask needs one of the library"):
    distributions.log_likelihood(UserGaussian(batch["target"], batch["target"]),
                                 batch["target"], mask=jnp.ones((5, 2)))


def test_sampling_a_gaussian_and_a_mixture_decoder():
  rng = jax.random.PRNGKey(0)
  gaussian = DiagonalGaussian(jnp.array([[1.0, -2.0]]), jnp.log(jnp.array([[0.25, 4.0]])))
  draws = gaussian.sample(rng, (20_000,))
  chex.assert_shape(draws, (20_000, 1, 2))
  np.testing.assert_allclose(draws.mean(0)[0], [1, -2], atol=0.05)
  np.testing.assert_allclose(draws.var(0)[0], [0.25, 4.0], rtol=0.05)
  mixture = GaussianMixture(
      jnp.log(jnp.array([[0.2, 0.8]])),
      DiagonalGaussian(jnp.array([[[-3.0], [3.0]]]), jnp.full((1, 2, 1), -4.0)))
  draws = mixture.sample(rng, (20_000,))
  chex.assert_shape(draws, (20_000, 1, 1))
  assert abs(float(jnp.mean(draws < 0)) - 0.2) < 0.01  # Component frequencies.
  np.testing.assert_allclose(float(draws.mean()), float(mixture.mean[0, 0]), atol=0.05)
  np.testing.assert_allclose(float(mixture.mean[0, 0]), 0.2 * -3 + 0.8 * 3, rtol=1e-6)
  # A Gaussian decoder through sampling.generate: shapes and mean vs draws.
  model = ToyMixtureCVAE(hidden_sizes=(8,))
  x = jnp.zeros((3, 1))
  params = model.init(rng, jnp.zeros((3, 2)), x)
  chex.assert_shape(sampling.generate(model, params, x, rng), (3, 2))
  chex.assert_shape(sampling.generate(model, params, x, rng, draw=True), (3, 2))
  chex.assert_shape(toy_mixture.sample_targets(model, params, x, rng, 7), (7, 3, 2))


class _NoPrior(ToyMixtureCVAE):
  def prior_from_features(self, x):
    raise NotImplementedError


class _NoBroadcast(ToyMixtureCVAE):
  def generation_from_features(self, z, x):
    mean = self.generation_net(jnp.concatenate([z, x], -1))
    return DiagonalGaussian(mean, jnp.zeros_like(mean))


class _WrongLatent(ToyMixtureCVAE):
  def recognition_from_features(self, target, x):
    q = super().recognition_from_features(target, x)
    return DiagonalGaussian(q.mean[:, :1], q.log_variance[:, :1])


class _PerCoordinate(UserGaussian):
  """log_prob per coordinate: forgot to sum over the event axis."""

  def log_prob(self, y):
    return -0.5 * (y - self.loc) ** 2


_register_pytree(_PerCoordinate)


class _UnsummedLikelihood(ToyMixtureCVAE):
  def generation_from_features(self, z, x):
    g = super().generation_from_features(z, x)
    return _PerCoordinate(g.mean, g.log_variance)


@pytest.mark.parametrize("model, message", [
    (_NoPrior(), "does not define prior_from_features"),
    (_NoBroadcast(), r"z \[3, 4, 2\].*broadcast the features.*Cannot concatenate"),
    (_WrongLatent(), "must return a DiagonalGaussian shaped as the prior's"),
    (_UnsummedLikelihood(), r"at z \[4, 2\] has shape \(4, 2\), expected \(4,\)"),
])
def test_the_model_checker_names_what_is_wrong(model, message):
  batch = {"condition": jnp.zeros((4, 1)), "target": jnp.zeros((4, 2))}
  with pytest.raises(model_check.ModelError, match=message):
    model_check.check_model(model, batch)
  model_check.check_model(ToyMixtureCVAE(), batch)  # The right one passes.


def test_resume_with_changed_settings_is_refused_or_recorded(tmp_path):
  toy_mixture.train_and_evaluate(tiny_toy_config(), tmp_path)
  # Accepted and recorded: more epochs at another learning rate.
  results = toy_mixture.train_and_evaluate(
      tiny_toy_config(num_epochs=3, learning_rate=1e-3), tmp_path)
  history = results["history"]
  assert [(s["from_step"], s["to_step"]) for s in history] == [(0, 20), (20, 30)]
  assert history[0]["settings"]["learning_rate"] == 3e-3
  assert history[1]["changed"] == {"learning_rate": [3e-3, 1e-3], "num_epochs": [2, 3]}
  assert hooks.read_history(tmp_path) == history
  # Refused, one line, nothing lost: a change of the optimiser state's structure.
  for change, text in ((dict(gradient_clip_norm=1.0), "gradient_clipping False -> True"),
                       (dict(optimizer="sgd"), "optimizer adam -> sgd")):
    with pytest.raises(ConfigError, match=text):
      toy_mixture.train_and_evaluate(tiny_toy_config(num_epochs=4, **change), tmp_path)
  assert hooks.read_history(tmp_path) == history
  # restore: the last parameters and the run's config.
  restored = runner.restore(tmp_path)
  assert (restored.step, restored.finished) == (30, True)
  assert restored.config.num_epochs == 3
  figures = evaluators.evaluate_cvae(
      toy_mixture.make_model(restored.config), restored.params,
      toy_mixture.objective_batch(toy_mixture.load_splits(restored.config)["test"]),
      jax.random.PRNGKey(0), num_samples=16, elbo_samples=2)
  assert set(figures) == {"prior_mean", "prior_monte_carlo", "importance_sampled",
                          "negative_elbo"}
  # The IS-NLL is an estimate of a bound on the truth: above it on average.
  truth = results["test"]["true_nll"]
  assert figures["importance_sampled"] > truth
  assert figures["negative_elbo"] >= figures["importance_sampled"] - 0.05


def test_trainer_defaults_and_a_missing_field(tmp_path):
  config = configs.trainer_defaults()
  assert set(trainer.REQUIRED_FIELDS) <= set(config)
  del config["keep_checkpoints"]
  with pytest.raises(ConfigError, match="no 'keep_checkpoints'.*trainer_defaults"):
    trainer.validate_trainer_config(config)
  with pytest.raises(ConfigError, match="lr_schedule.name must be one of"):
    optimizers.from_config(_trainer_config(lr_schedule=configs.lr_schedule_config(
        name="wavy")), 10)


def test_a_toy_run_imports_no_tensorflow_and_writes_tensorboard(tmp_path):
  code = f"""
import sys
from cvae_jax.tasks import toy_mixture
from cvae_jax import plotting
sys.path.insert(0, "tests")
from helpers import tiny_toy_config
toy_mixture.train_and_evaluate(tiny_toy_config(), {str(tmp_path)!r})
assert "tensorflow" not in sys.modules, "TensorFlow was imported"
# TensorBoard's own reader (what plotting uses) may import TensorFlow.
scalars = plotting.read_scalars({str(tmp_path)!r})
print(sorted(scalars), [int(s) for s in scalars["train/loss"][0]])
"""
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=300, check=False, cwd=REPO)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "train/kl_weight" in out.stdout and "[0, 5, 10, 15]" in out.stdout


def test_a_missing_config_file_with_an_override_is_one_line():
  out = subprocess.run(
      [sys.executable, "-m", "train.toy_mixture", "--config=train/configs/missing.py",
       "--config.batch_size=1", "--workdir=/tmp/never"],
      capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      "error: cannot load the --config file ([Errno 2] No such file or directory: "
      "'train/configs/missing.py'); pass --config=<path to a config .py>, e.g. "
      "train/configs/toy_mixture.py"], out.stderr
