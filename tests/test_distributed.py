"""Training over several processes (jax.distributed, CPU collectives through
gloo): two local processes with one CPU device each equal one process with
two devices and the same global batch (label CVAE, quadrant hybrid CVAE); a
SIGKILL mid-run then a restart of both resumes, past a damaged checkpoint;
streamed data is read in disjoint shards that together cover the epoch;
process 0 builds shared data first; one-line errors for incomplete settings
and a process count other than the coordinator's."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from cvae_jax.errors import UserError
from cvae_jax import distributed, evaluation
from cvae_jax.training import InMemoryData, hooks, trainer
from helpers import streaming_data, truncate_checkpoint
from tests import distributed_worker as worker

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env() -> dict[str, str]:
  """The environment without the suite's fake-device flag: 1 device each."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  # The repo root, as `python -m` from it has: train/ is not installed.
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
  return env


def _start(workdir: Path, epochs: int, path: str, example: str,
           seconds_per_log: float = 0.0) -> list[subprocess.Popen]:
  port, env = _free_port(), _env()
  return [subprocess.Popen(
      [sys.executable, str(REPO / "tests" / "distributed_worker.py"), str(port),
       "2", str(i), str(workdir), str(epochs), path, example, str(seconds_per_log)],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(2)]


def _launch(workdir: Path, epochs: int, path: str, example: str):
  processes = _start(workdir, epochs, path, example)
  try:
    outputs = [p.communicate(timeout=600)[0] for p in processes]
  finally:
    for p in processes:
      p.kill()
  return [p.returncode for p in processes], outputs


def _run_processes(workdir: Path, epochs: int, path: str = "in_memory",
                   example: str = "label"):
  """Both processes of a 2-process run; returns their saved results. A
  launch that fails is retried once on a new port (the free port found may
  be taken by another program before the coordinator binds it); the retry
  resumes from whatever the first saved, which ends in the same state.
  Each process's output is then both launches' (what the first did, e.g.
  moving a damaged checkpoint aside, the retry does not do again)."""
  codes, outputs = _launch(workdir, epochs, path, example)
  if any(codes):
    print("first launch failed, retrying:", *outputs, sep="\n")
    first = outputs
    codes, outputs = _launch(workdir, epochs, path, example)
    outputs = [f"{a}\n{b}" for a, b in zip(first, outputs)]
  for code, out in zip(codes, outputs):
    assert code == 0, out
  results = [np.load(workdir / f"process_{i}.npz") for i in range(2)]
  return results, outputs


def _params(result):
  return [result[k] for k in sorted((k for k in result.files if k.startswith("param_")),
                                    key=lambda k: int(k.split("_")[1]))]


def _one_process(workdir, epochs, example="label"):
  arrays, init_fn, loss_fn = worker.setup(example)
  logged = []
  config = worker.config(epochs)
  state = trainer.train(config, workdir, init_fn, loss_fn, InMemoryData(arrays),
                        hooks=hooks.standard(
                            config, report=lambda progress, m: logged.append(m["loss"])),
                        devices=jax.devices()[:2])
  return np.array(logged), [np.asarray(x) for x in jax.tree.leaves(state.params)]


def _saved_steps(workdir: Path) -> list[int]:
  directory = workdir / "checkpoints"
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


@pytest.mark.parametrize("example", ["label", "quadrant"])
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path, example):
  results, outputs = _run_processes(tmp_path / "two", epochs=2, example=example)
  losses, params = _one_process(tmp_path / "one", epochs=2, example=example)
  for result in results:  # Both processes saw every step's global loss.
    np.testing.assert_allclose(result["losses"], losses, rtol=1e-5)
    for a, b in zip(_params(result), params):
      np.testing.assert_allclose(a, b, atol=1e-5)
  # Logs and metric files from process 0 only; one set of checkpoints.
  assert "compiling the train step" in outputs[0]
  assert "compiling the train step" not in outputs[1]
  assert len(list((tmp_path / "two").glob("events.out.tfevents.*"))) == 1
  assert _saved_steps(tmp_path / "two") == [2, 4, 6, 8, 10, 12]


def test_two_processes_evaluate_disjoint_batches_and_report_what_one_does(tmp_path):
  results, _ = _run_processes(tmp_path, 0, example="evaluate")
  fn, params, arrays, rng, batch_size = worker.evaluation_case()
  expected = evaluation.map_over_batches(fn, params, arrays, rng, batch_size)
  for result in results:  # Both processes return every example, in order.
    np.testing.assert_allclose(result["values"], expected, rtol=1e-6)
  shares = [set(r["batches"].tolist()) for r in results]
  assert shares[0].isdisjoint(shares[1]) and shares[0] | shares[1] == {0, 1, 2, 3}


def test_a_kill_then_a_restart_of_both_processes_resumes(tmp_path):
  """SIGKILL one process mid-run (its partner is then stopped, as a cluster
  scheduler would), damage the newest checkpoint as a kill during a write
  could, restart both: they resume from the previous checkpoint, process 0
  alone moves the damaged one aside, and the run ends as if uninterrupted."""
  workdir = tmp_path / "two"
  processes = _start(workdir, epochs=2, path="in_memory", example="label",
                     seconds_per_log=0.5)
  try:
    deadline = time.monotonic() + 300
    while max(_saved_steps(workdir), default=0) < 4:
      assert all(p.poll() is None for p in processes), "ended before the kill"
      assert time.monotonic() < deadline, "no checkpoint of step 4 in 300 s"
      time.sleep(0.05)
    processes[1].send_signal(signal.SIGKILL)
    processes[1].wait()
  finally:
    for p in processes:
      p.kill()
      p.communicate()
  saved = _saved_steps(workdir)
  assert 4 <= saved[-1] < 12, saved  # Killed mid-run.
  truncate_checkpoint(workdir / "checkpoints" / str(saved[-1]))

  results, outputs = _run_processes(workdir, epochs=2)
  assert f"checkpoint {saved[-1]} is unreadable" in outputs[0]
  assert f"resumed from checkpoint of step {saved[-2]}" in outputs[0]
  assert [p.name for p in (workdir / "unreadable_checkpoints").iterdir()] == [
      str(saved[-1])]
  losses, params = _one_process(tmp_path / "one", epochs=2)
  resumed = len(results[0]["losses"])
  assert resumed == 12 - saved[-2]
  np.testing.assert_allclose(results[0]["losses"], losses[-resumed:], rtol=1e-5)
  for a, b in zip(_params(results[1]), params):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_streamed_data_is_read_in_disjoint_shards_that_cover_the_epoch(tmp_path):
  stream = streaming_data({"index": np.arange(48)})
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


_COORDINATOR = """
import sys, time
from cvae_jax import distributed, evaluation
distributed.initialize(sys.argv[1], 2, 0)
time.sleep(120)
"""


def test_a_process_count_other_than_the_coordinators_is_a_one_line_error(tmp_path):
  """Process 0 coordinates 2 processes; one started with --num_processes=3
  through the entry point joins, names the mismatch in one line and leaves
  at once (not after jax.distributed's shutdown barrier)."""
  env = _env()
  address = f"localhost:{_free_port()}"
  coordinator = subprocess.Popen([sys.executable, "-c", _COORDINATOR, address],
                                 cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
  try:
    joined = subprocess.run(
        [sys.executable, "-m", "train.mnist_label", f"--workdir={tmp_path}",
         f"--coordinator_address={address}", "--num_processes=3", "--process_id=1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert coordinator.poll() is None  # It left before the coordinator did.
  finally:
    coordinator.kill()
    coordinator.wait()
  assert joined.returncode == 2, joined.stderr
  errors = [l for l in joined.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, joined.stderr
  assert "--num_processes=3 but the coordinator" in errors[0]
  assert "runs 2 processes" in errors[0]


_BUILD = """
import sys, time
from pathlib import Path
from cvae_jax import distributed, evaluation
distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
log = Path(sys.argv[3])
with distributed.main_process_first("build"):
  with log.open("a") as f:
    f.write(f"start {sys.argv[2]}\\n")
  time.sleep(1.0)
  with log.open("a") as f:
    f.write(f"end {sys.argv[2]}\\n")
"""


def test_process_0_builds_a_shared_dataset_before_the_others(tmp_path):
  """`main_process_first` (around TFDS preparation): process 1's body starts
  only after process 0's has ended, even when process 1 comes first."""
  env = _env()
  address, log = f"localhost:{_free_port()}", tmp_path / "log"
  processes = [subprocess.Popen([sys.executable, "-c", _BUILD, address, str(i), str(log)],
                                cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
               for i in (1, 0)]
  try:
    outputs = [p.communicate(timeout=300)[0] for p in processes]
  finally:
    for p in processes:
      p.kill()
  assert all(p.returncode == 0 for p in processes), outputs
  assert log.read_text().split("\n")[:-1] == ["start 0", "end 0", "start 1", "end 1"]


def test_distributed_without_a_cluster_is_a_one_line_error(tmp_path):
  env = {k: v for k, v in _env().items()  # No cluster for JAX to detect.
         if not k.startswith(("SLURM_", "OMPI_", "TPU_"))}
  run = subprocess.run([sys.executable, "-m", "train.mnist_label",
                        f"--workdir={tmp_path}", "--distributed"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
  assert run.returncode == 2, run.stderr
  errors = [l for l in run.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "from the platform's settings" in errors[0], run.stderr
  assert "pass --coordinator_address" in errors[0]
