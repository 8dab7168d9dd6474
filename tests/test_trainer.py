"""The generic trainer on small problems: multi-device equivalence, exact
resume, divergence, corrupt checkpoints, config errors, and the hooks its
loop calls."""

import dataclasses
import os
import signal
import sys

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cvae_jax import objectives
from cvae_jax.errors import ConfigError, TrainingDivergedError, UserError
from cvae_jax.models import LabelCVAE
from cvae_jax.training import InMemoryData, Interrupted, hooks, optimizers, trainer
from cvae_jax.training.checkpointing import Checkpointer
from helpers import streaming_data, truncate_checkpoint
from helpers import TINY_LABEL_CVAE as MODEL, tiny_label_init as INIT_FN
from helpers import tiny_label_arrays as _arrays, tiny_trainer_config as _config


def LOSS_FN(params, batch, rng, step):  # pylint: disable=invalid-name
  del step  # No annealing.
  return objectives.summed_negative_elbo_loss(MODEL, params, batch, rng)


def _train(workdir, config=None, data=None, evaluate=None, extra_hooks=(),
           **kwargs):
  """A run with the standard hooks (and `extra_hooks` after them); returns
  (state, [(step, loss) of each logged step])."""
  logged = []
  def report(progress, metrics):
    logged.append((progress.step, metrics["loss"]))
    return None
  config = config or _config()
  state = trainer.train(config, workdir, INIT_FN, LOSS_FN,
                        data or InMemoryData(_arrays()),
                        hooks=[*hooks.standard(config, evaluate=evaluate, report=report),
                               *extra_hooks], **kwargs)
  return state, logged


def test_four_devices_match_one_device(tmp_path):
  assert jax.local_device_count() == 4
  one, one_logged = _train(tmp_path / "one", devices=jax.local_devices()[:1])
  four, four_logged = _train(tmp_path / "four")
  np.testing.assert_allclose([l for _, l in one_logged],
                             [l for _, l in four_logged], rtol=1e-5)
  chex.assert_trees_all_close(one.params, four.params, atol=1e-5, rtol=1e-5)
  assert int(one.step) == int(four.step) == 2 * 48 // 8


@pytest.mark.parametrize("data_kind, signum", [("in_memory", signal.SIGINT),
                                               ("streaming", signal.SIGTERM)])
def test_resume_after_a_signal_equals_uninterrupted(tmp_path, data_kind, signum):
  arrays = _arrays()
  make_data = {"in_memory": lambda: InMemoryData(arrays),
               "streaming": lambda: streaming_data(arrays)}[data_kind]
  uninterrupted, logged = _train(tmp_path / "a", data=make_data())

  def interrupt_at_step_8(progress, metrics):
    if progress.step == 8:  # Mid-epoch 1 (6 steps per epoch).
      os.kill(os.getpid(), signum)
  with pytest.raises(Interrupted) as interrupted:
    trainer.train(_config(), tmp_path / "b", INIT_FN, LOSS_FN, make_data(),
                  hooks=hooks.standard(_config(), report=interrupt_at_step_8))
  assert interrupted.value.signum == signum
  assert interrupted.value.exit_code == 128 + signum  # 130 or 143.
  saved = Checkpointer(tmp_path / "b", 10).latest_step()
  assert saved == 10  # The dispatch holding step 8 ends at step 10; saved there.
  resumed, resumed_logged = _train(tmp_path / "b", data=make_data())
  chex.assert_trees_all_equal(uninterrupted.params, resumed.params)
  chex.assert_trees_all_equal(uninterrupted.opt_state, resumed.opt_state)
  assert resumed_logged == [x for x in logged if x[0] >= 10]


class _RecordingStdout:
  """A block-buffered, non-terminal stdout that records writes and flushes."""

  def __init__(self, events):
    self.events, self.text = events, ""

  def write(self, text):
    self.text += text

  def flush(self):
    if self.text:
      self.events.append(("shown", self.text))
      self.text = ""

  def isatty(self):
    return False


def test_a_log_line_is_shown_before_the_next_dispatch(tmp_path, monkeypatch):
  """Steps run many per dispatch, but a dispatch ends at each logged step and
  its line is flushed (stdout may be a pipe) before the steps after it run."""
  events = []
  make_runner = trainer._in_memory_runner

  def recording_runner(*args):
    run_chunk = make_runner(*args)
    def run(state, epoch, start, num_steps):
      events.append(("dispatch", 6 * epoch + start, num_steps))
      return run_chunk(state, epoch, start, num_steps)
    return run
  monkeypatch.setattr(trainer, "_in_memory_runner", recording_runner)
  monkeypatch.setattr(sys, "stdout", _RecordingStdout(events))
  config = _config(steps_per_dispatch=100, log_every_steps=4,
                   checkpoint_every_steps=100)
  trainer.train(config, tmp_path, INIT_FN, LOSS_FN, InMemoryData(_arrays()),
                hooks=hooks.standard(config, report=lambda progress, _: f"step {progress.step}"))
  # 6 steps per epoch; logged steps 0 and 4 of each epoch.
  compiling = "compiling the train step ({} steps per dispatch)...\n"
  assert events == [
      ("shown", compiling.format(4)), ("dispatch", 0, 4), ("shown", "step 0\n"),
      ("shown", compiling.format(2)), ("dispatch", 4, 2), ("shown", "step 4\n"),
      ("dispatch", 6, 4), ("shown", "step 6\n"),
      ("dispatch", 10, 2), ("shown", "step 10\n")]


def _order_sensitive_loss(params, batch, rng, step):
  """No randomness: SGD on it ends elsewhere only if the batch order differs."""
  del rng, step
  return jnp.sum((params - jnp.mean(batch["x"], axis=0)) ** 2) * params[0], {}


def test_seed_sets_the_data_order(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # Also: a relative workdir works.
  data = InMemoryData({"x": np.random.default_rng(0).random((48, 3)).astype(np.float32)})
  def run(workdir, seed):
    return trainer.train(_config(seed=seed, optimizer="sgd", learning_rate=0.1),
                         workdir, lambda rng: jnp.ones(3), _order_sensitive_loss,
                         data).params
  a, same, other = run("relative/a", 3), run("relative/b", 3), run("c", 4)
  assert (tmp_path / "relative" / "a" / "checkpoints" / "12").is_dir()
  np.testing.assert_array_equal(a, same)
  assert not np.allclose(a, other)


def _quartic_loss(params, batch, rng, step):
  del batch, rng, step
  loss = jnp.sum(params ** 4)
  return loss, {}


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
  # SGD with lr=1 on p**4 from p=1: -3, 105, -4.6e6, 4e20, then inf.
  config = _config(optimizer="sgd", learning_rate=1.0, batch_size=4,
                   num_epochs=5, steps_per_dispatch=1, checkpoint_every_steps=2)
  with pytest.raises(TrainingDivergedError, match="last good checkpoint"):
    trainer.train(config, tmp_path, lambda rng: jnp.ones(()), _quartic_loss,
                  InMemoryData({"x": np.zeros((4, 1), np.float32)}))
  checkpointer = Checkpointer(tmp_path, 10)
  assert checkpointer.latest_step() == 4
  template = trainer.TrainState.create(jnp.ones(()), optimizers.make_optimizer("sgd", 1.0),
                                       jax.random.PRNGKey(0))
  restored = checkpointer.restore_latest(template)
  assert np.isfinite(restored.params) and abs(float(restored.params)) > 1e20


def test_truncated_latest_checkpoint_falls_back_to_previous(tmp_path):
  uninterrupted, _ = _train(tmp_path / "a")
  _train(tmp_path / "b", config=_config(num_epochs=1))  # Saves 2, 4 and 6.
  truncate_checkpoint(tmp_path / "b" / "checkpoints" / "6")
  resumed, logged = _train(tmp_path / "b")
  assert logged[0][0] == 4  # Restarted from step 4, not 6 nor 0.
  assert (tmp_path / "b" / "unreadable_checkpoints" / "6").is_dir()  # Kept.
  chex.assert_trees_all_equal(uninterrupted.params, resumed.params)


@pytest.mark.parametrize("overrides, message", [
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(batch_size=6), "does not divide by the 4 local devices"),
    (dict(batch_size=64), "larger than the 48 training examples"),
    (dict(learning_rate=-0.1), "learning_rate must be positive"),
    (dict(optimizer="adamm"), "unknown optimizer"),
    (dict(num_epochs=0), "num_epochs must be a positive integer"),
])
def test_bad_config_values_raise_config_error(tmp_path, overrides, message):
  with pytest.raises(ConfigError, match=message):
    _train(tmp_path, config=_config(**overrides))
  assert not (tmp_path / "checkpoints").exists() or not any(
      (tmp_path / "checkpoints").iterdir())


def test_resuming_with_another_model_or_batch_size_is_refused(tmp_path):
  _train(tmp_path, config=_config(num_epochs=1))
  other_model = LabelCVAE(hidden_size=8, latent_size=2)
  with pytest.raises(UserError, match="another model or optimiser"):
    trainer.train(_config(), tmp_path,
                  lambda rng: other_model.init(rng, jnp.zeros((1, 784)),
                                               jnp.zeros((1,), jnp.int32)),
                  LOSS_FN, InMemoryData(_arrays()), hooks=hooks.standard(_config()))
  with pytest.raises(ConfigError, match="batch_size 8 -> 4"):
    _train(tmp_path, config=_config(batch_size=4))
  # Nothing was moved or deleted.
  assert Checkpointer(tmp_path, 10).latest_step() == 6
  assert not (tmp_path / "unreadable_checkpoints").exists()


def test_early_stopping_returns_the_best_epoch_and_resumes_stopped(tmp_path):
  """Validation values by epoch 5, 4, 6, 7, 8: with patience 3 training stops
  after epoch 4 and returns the state at the end of epoch 1 (step 12)."""
  script = [5.0, 4.0, 6.0, 7.0, 8.0, 1.0, 1.0, 1.0]
  evaluated, snapshots = [], {}

  def evaluate(state, epoch):
    evaluated.append(epoch)
    snapshots[epoch] = jax.device_get(state.params)
    return {"validation": script[epoch]}

  config = _config(num_epochs=8, early_stopping_metric="validation",
                   early_stopping_patience=3)
  best, _ = _train(tmp_path, config=config, evaluate=evaluate)
  assert evaluated == [0, 1, 2, 3, 4]
  assert int(best.step) == 12
  chex.assert_trees_all_equal(jax.device_get(best.params), snapshots[1])
  # A rerun trains no further and returns the same best state.
  again, logged = _train(tmp_path, config=config, evaluate=evaluate)
  assert evaluated == [0, 1, 2, 3, 4] and not logged
  chex.assert_trees_all_equal(again.params, best.params)


def test_early_stopping_metric_must_be_evaluated(tmp_path):
  config = _config(early_stopping_metric="validation", early_stopping_patience=2)
  with pytest.raises(ConfigError, match="not one of the evaluated metrics"):
    _train(tmp_path, config=config, evaluate=lambda state, epoch: {"loss": 1.0})
  with pytest.raises(ConfigError, match="evaluates nothing"):
    _train(tmp_path / "b", config=config)


def test_bfloat16_compute_is_finite_and_close_to_float32(tmp_path):
  """Mixed precision (bfloat16 activations and matmuls, float32 params,
  optimiser state and reductions): the same run's logged losses within 2%
  of float32's; parameters stay float32, on average within 2e-3 of
  float32's after 12 Adam steps at learning rate 1e-2."""
  config = _config(num_epochs=2)
  runs = {}
  for name in ("float32", "bfloat16"):
    config.compute_dtype = name
    runs[name] = _train(tmp_path / name, config)
  (state32, log32), (state16, log16) = runs["float32"], runs["bfloat16"]
  losses32, losses16 = (np.array([l for _, l in log]) for log in (log32, log16))
  assert np.all(np.isfinite(losses16))
  np.testing.assert_allclose(losses16, losses32, rtol=0.02)
  assert not np.array_equal(losses16, losses32)  # bfloat16 did run.
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state16.params))
  # Adam moves each weight by ~lr a step whatever the gradient's size, so a
  # few weights whose gradient is near 0 differ by up to steps x lr; the
  # rest agree closely.
  diff = np.abs(np.concatenate([np.ravel(a - b) for a, b in zip(
      jax.tree.leaves(state16.params), jax.tree.leaves(state32.params))]))
  assert diff.mean() < 2e-3 and np.mean(diff > 0.02) < 0.01, (diff.mean(),
                                                              np.mean(diff > 0.02))


def test_unknown_compute_dtype_is_a_config_error(tmp_path):
  with pytest.raises(ConfigError, match="compute_dtype must be one of float32, "
                     "bfloat16, got 'bf16'; set --config.compute_dtype"):
    _train(tmp_path, _config(compute_dtype="bf16"))


class _Recorder(hooks.Hook):
  """Records every call the loop makes, with its arguments; evaluates
  {"score": epoch} when `evaluates`, asks for a checkpoint at the steps in
  `checkpoint_at` and to stop at step `stop_at`."""

  def __init__(self, evaluates=False, checkpoint_at=(), stop_at=None):
    self.calls = []
    self._evaluates, self._checkpoint_at = evaluates, checkpoint_at
    self._stop_at = stop_at

  def start(self, run):
    self.calls.append(("start", run))

  def begin(self, state, resumed):
    self.calls.append(("begin", int(state.step), resumed))

  def message(self, line):
    self.calls.append(("message", line))

  def should_stop(self, step):
    self.calls.append(("should_stop", step))
    return step == self._stop_at

  def after_steps(self, steps, metrics):
    assert all(len(v) == len(steps) for v in metrics.values())
    self.calls.append(("after_steps", [p.step for p in steps], sorted(metrics)))

  def evaluate(self, state, epoch):
    self.calls.append(("evaluate", int(state.step), epoch))
    return {"score": float(epoch)} if self._evaluates else None

  def after_epoch(self, state, epoch, metrics):
    self.calls.append(("after_epoch", int(state.step), epoch, metrics))

  def wants_checkpoint(self, step):
    self.calls.append(("wants_checkpoint", step))
    return step in self._checkpoint_at

  def after_checkpoint(self, step, directory):
    self.calls.append(("after_checkpoint", step, directory))

  def end(self, state):
    self.calls.append(("end", int(state.step)))
    return state

  def close(self):
    self.calls.append(("close",))


def test_the_loop_calls_a_callers_hook_at_every_point(tmp_path, capsys):
  """With only the caller's hook: each point in order with its arguments, an
  extra checkpoint where the hook asks for one; nothing printed and no file
  written but the checkpoints."""
  recorder = _Recorder(evaluates=True, checkpoint_at=(4,))
  config = _config(checkpoint_every_steps=100)  # Else only at epoch ends.
  state = trainer.train(config, tmp_path, INIT_FN, LOSS_FN, InMemoryData(_arrays()),
                        hooks=[recorder])
  directory = tmp_path / "checkpoints"
  run = hooks.Run(config, tmp_path, steps_per_epoch=6, total_steps=12,
                  num_examples=48, latest_checkpoint=None,
                  identity=dict(batch_size=8, seed=3, num_examples=48,
                                **optimizers.structure(config)))
  expected = [("start", run), ("begin", 0, False)]
  for step in range(0, 12, 2):  # Dispatches of 2 steps: steps_per_dispatch.
    expected.append(("should_stop", step))
    if step == 0:
      expected.append(("message", "compiling the train step (2 steps per dispatch)..."))
    expected.append(("after_steps", [step, step + 1], ["kl", "loss", "reconstruction"]))
    done = step + 2
    if done % 6 == 0:
      epoch = done // 6 - 1
      expected += [("evaluate", done, epoch),
                   ("after_epoch", done, epoch, {"score": float(epoch)})]
    expected.append(("wants_checkpoint", done))
    if done in (4, 6, 12):
      expected.append(("after_checkpoint", done, directory))
  expected += [("end", 12), ("close",)]
  assert recorder.calls == expected
  assert int(state.step) == 12
  assert sorted(int(p.name) for p in directory.iterdir()) == [4, 6, 12]
  assert [p.name for p in tmp_path.iterdir()] == ["checkpoints"]
  assert capsys.readouterr().out == ""

  # Resumed at the end: the run says so, begin says so, no step runs.
  again = _Recorder(evaluates=True)
  trainer.train(config, tmp_path, INIT_FN, LOSS_FN, InMemoryData(_arrays()),
                hooks=[again])
  assert again.calls == [
      ("start", dataclasses.replace(run, latest_checkpoint=12)),
      ("begin", 12, True),
      ("message", f"resumed from checkpoint of step 12 in {directory}"),
      ("end", 12), ("close",)]


class _Stop(Exception):
  pass


class _StopAtFirstCheckpoint(hooks.Hook):
  def after_checkpoint(self, step, directory):
    raise _Stop(step)


def test_a_hook_can_stop_training_and_close_runs_after_an_error(tmp_path):
  stopper = _Recorder(stop_at=4)
  state, _ = _train(tmp_path / "stop", extra_hooks=[stopper])
  assert int(state.step) == 4
  assert [c[1] for c in stopper.calls if c[0] == "after_steps"] == [[0, 1], [2, 3]]
  assert stopper.calls[-2:] == [("end", 4), ("close",)]

  # Raising after a checkpoint (as StopSignals does) ends the run there.
  closing = _Recorder()
  with pytest.raises(_Stop):
    _train(tmp_path / "raise", extra_hooks=[_StopAtFirstCheckpoint(), closing])
  assert Checkpointer(tmp_path / "raise", 10).latest_step() == 2
  assert closing.calls[-1] == ("close",) and ("end", 2) not in closing.calls
  _, logged = _train(tmp_path / "raise")
  assert logged[0][0] == 2  # Resumed there.

  failing = _Recorder()
  def diverge(params, batch, rng, step):
    loss, metrics = LOSS_FN(params, batch, rng, step)
    return loss * jnp.nan, metrics
  with pytest.raises(TrainingDivergedError):
    trainer.train(_config(), tmp_path / "nan", INIT_FN, diverge,
                  InMemoryData(_arrays()), hooks=[failing])
  assert failing.calls[-1] == ("close",)
  assert not any(call[0] == "end" for call in failing.calls)


def test_the_loss_gets_the_global_step(tmp_path):
  """In dispatches of 4 and 2 steps (a scan each), over two epochs."""
  seen = []

  class Steps(hooks.Hook):
    def after_steps(self, steps, metrics):
      seen.extend(zip([p.step for p in steps], metrics["step"].tolist()))

  def loss_fn(params, batch, rng, step):
    del batch, rng
    return jnp.sum(params) * 0.0, {"step": step}
  config = _config(steps_per_dispatch=4, log_every_steps=100,
                   checkpoint_every_steps=100)
  trainer.train(config, tmp_path, lambda rng: jnp.zeros(()), loss_fn,
                InMemoryData({"x": np.zeros((48, 1), np.float32)}), hooks=[Steps()])
  assert seen == [(step, step) for step in range(12)]


def test_both_convolution_libraries_train_alike(tmp_path, monkeypatch):
  """config.cpu_convolutions reaches the train step's compilation (a bad
  value of the option it sets fails there) and the two libraries train a
  conv net to the same parameters (float rounding apart)."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from cvae_jax import backends  # pylint: disable=g-import-not-at-top
  net = nn.Sequential([nn.Conv(4, (3, 3)), nn.relu, nn.Conv(1, (3, 3), strides=2)])
  init_fn = lambda rng: net.init(rng, jnp.zeros((1, 8, 8, 1)))

  def loss_fn(params, batch, rng, step):
    del rng, step
    return jnp.mean((net.apply(params, batch["image"]) - batch["target"]) ** 2), {}

  rng = np.random.default_rng(0)
  data = InMemoryData({"image": rng.random((16, 8, 8, 1), np.float32),
                       "target": rng.random((16, 4, 4, 1), np.float32)})
  config = _config(num_epochs=1)
  states = {}
  for library in ("ynnpack", "eigen"):
    config.cpu_convolutions = library
    states[library] = trainer.train(config, tmp_path / library, init_fn, loss_fn, data)
  chex.assert_trees_all_close(states["ynnpack"].params, states["eigen"].params,
                              atol=1e-5, rtol=1e-5)
  auto = lambda **fields: backends.convolution_library(
      ml_collections.ConfigDict(dict(cpu_convolutions="auto", **fields)))
  assert auto(image_size=128) == auto(image_size=32) == "eigen"
  assert auto() == "ynnpack"  # An MLP's config: XLA's default.
  monkeypatch.setattr(backends, "compiler_options", lambda config: {
      "xla_cpu_experimental_ynn_fusion_type": "NOT_A_FUSION_TYPE"})
  with pytest.raises(Exception, match="NOT_A_FUSION_TYPE"):
    trainer.train(config, tmp_path / "bad", init_fn, loss_fn, data)


def test_an_unknown_convolution_library_is_a_config_error(tmp_path):
  with pytest.raises(ConfigError, match="cpu_convolutions must be one of auto, "
                     "ynnpack, eigen, got 'mkl'; set --config.cpu_convolutions"):
    _train(tmp_path, _config(cpu_convolutions="mkl"))
