"""Training over several processes (jax.distributed, CPU collectives through
gloo): two local processes with one CPU device each equal one process with
two devices and the same global batch; a restart of both resumes; streamed
data is read in disjoint shards that together cover the epoch; one-line
errors for incomplete settings."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from cvae_jax.errors import UserError
from cvae_jax.training import InMemoryData, StreamingData, distributed, trainer
from tests import distributed_worker as worker

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(workdir: Path, epochs: int, path: str):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # 1 device each.
  port = _free_port()
  processes = [subprocess.Popen(
      [sys.executable, str(REPO / "tests" / "distributed_worker.py"), str(port),
       "2", str(i), str(workdir), str(epochs), path],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(2)]
  try:
    outputs = [p.communicate(timeout=600)[0] for p in processes]
  finally:
    for p in processes:
      p.kill()
  return [p.returncode for p in processes], outputs


def _run_processes(workdir: Path, epochs: int, path: str = "in_memory"):
  """Both processes of a 2-process run; returns their saved results. A
  launch that fails is retried once on a new port (the free port found may
  be taken by another program before the coordinator binds it); the retry
  resumes from whatever the first saved, which ends in the same state."""
  codes, outputs = _launch(workdir, epochs, path)
  if any(codes):
    print("first launch failed, retrying:", *outputs, sep="\n")
    codes, outputs = _launch(workdir, epochs, path)
  for code, out in zip(codes, outputs):
    assert code == 0, out
  results = [np.load(workdir / f"process_{i}.npz") for i in range(2)]
  return results, outputs


def _params(result):
  return [result[k] for k in sorted((k for k in result.files if k.startswith("param_")),
                                    key=lambda k: int(k.split("_")[1]))]


def _one_process(workdir, epochs):
  logged = []
  state = trainer.train(worker.config(epochs), workdir, worker.INIT_FN,
                        worker.LOSS_FN, InMemoryData(worker.arrays()),
                        report=lambda progress, m: logged.append(m["loss"]),
                        devices=jax.devices()[:2])
  return np.array(logged), [np.asarray(x) for x in jax.tree.leaves(state.params)]


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
  results, outputs = _run_processes(tmp_path / "two", epochs=2)
  losses, params = _one_process(tmp_path / "one", epochs=2)
  for result in results:  # Both processes saw every step's global loss.
    np.testing.assert_allclose(result["losses"], losses, rtol=1e-5)
    for a, b in zip(_params(result), params):
      np.testing.assert_allclose(a, b, atol=1e-5)
  # Logs and metric files from process 0 only; one set of checkpoints.
  assert "compiling the train step" in outputs[0]
  assert "compiling the train step" not in outputs[1]
  assert len(list((tmp_path / "two").glob("events.out.tfevents.*"))) == 1
  assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()
                if p.name.isdigit()) == ["10", "12", "2", "4", "6", "8"]


def test_a_restart_of_both_processes_resumes(tmp_path):
  _run_processes(tmp_path / "two", epochs=1)  # 6 steps, then both stop.
  results, outputs = _run_processes(tmp_path / "two", epochs=2)
  assert "resumed from checkpoint of step" in outputs[0]  # 6, unless retried.
  losses, params = _one_process(tmp_path / "one", epochs=2)
  resumed = len(results[0]["losses"])
  assert 0 < resumed <= 6
  np.testing.assert_allclose(results[0]["losses"], losses[-resumed:], rtol=1e-5)
  for a, b in zip(_params(results[1]), params):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_streamed_data_is_read_in_disjoint_shards_that_cover_the_epoch(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  data = {"index": np.arange(48)}
  stream = StreamingData(lambda seed: tf.data.Dataset.from_tensor_slices(data).shuffle(
      48, seed=seed, reshuffle_each_iteration=False), 48)
  shards = [np.concatenate([b["index"] for b in stream.batches(7, 4, 0, (i, 2))])
            for i in range(2)]
  assert not set(shards[0]) & set(shards[1])
  assert sorted(np.concatenate(shards)) == list(range(48))
  # The trainer on that path, 2 processes: finite, and the same on both.
  results, _ = _run_processes(tmp_path / "streamed", epochs=1, path="streamed")
  assert np.all(np.isfinite(results[0]["losses"])) and len(results[0]["losses"]) == 6
  for a, b in zip(_params(results[0]), _params(results[1])):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, expected", [
    (dict(coordinator_address="localhost:1234"), "together"),
    (dict(coordinator_address="localhost:1234", num_processes=2, process_id=2),
     "--process_id=2 must be in 0..1"),
])
def test_incomplete_settings_are_one_line_errors(kwargs, expected):
  with pytest.raises(UserError, match=expected) as error:
    distributed.initialize(**kwargs)
  assert "\n" not in str(error.value)


def test_no_settings_start_nothing():
  assert distributed.initialize() is False
