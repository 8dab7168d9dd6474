"""One process of a multi-process training run (tests/test_distributed.py):
  python tests/distributed_worker.py PORT NUM_PROCESSES PROCESS_ID WORKDIR \
      EPOCHS {in_memory,streamed} {label,quadrant,evaluate} [SECONDS_PER_LOG]
Trains a tiny label CVAE or quadrant hybrid CVAE (the tasks' own model and
objective) on fixed random arrays with the global batch 8 and writes
WORKDIR/process_<id>.npz: the logged losses and the final parameters.
SECONDS_PER_LOG > 0 sleeps at every log line, so that a test can kill the
run mid-way. The example "evaluate" trains nothing: it maps `evaluation_case`
over its arrays and writes the results and the batches this process ran."""

from pathlib import Path
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cvae_jax import evaluation, objectives
from cvae_jax.models import LabelCVAE
from cvae_jax.tasks import mnist_quadrant
from cvae_jax.training import InMemoryData, hooks, trainer
from helpers import streaming_data
from train.configs import mnist_quadrant as quadrant_config

NUM_EXAMPLES = 48


def _label(rng):
  arrays = {"target": rng.random((NUM_EXAMPLES, 784)).astype(np.float32),
            "condition": rng.integers(0, 10, NUM_EXAMPLES).astype(np.int32)}
  model = LabelCVAE(hidden_size=16, latent_size=2)
  init_fn = lambda key: model.init(key, jnp.zeros((1, 784)),
                                   jnp.zeros((1,), jnp.int32))
  def loss_fn(params, batch, rng, step):
    del step  # The reference loss does not anneal.
    return objectives.summed_negative_elbo_loss(model, params, batch, rng)
  return arrays, init_fn, loss_fn


def _quadrant(rng):
  """The hybrid objective with the baseline trained jointly (no pre-training
  run needed); the bottom-left quadrant given, the rest hidden (-1)."""
  config = quadrant_config.get_config()
  config.model, config.baseline_training = "hybrid", "joint"
  config.network.hidden_sizes, config.network.latent_size = (16, 16), 4
  target = rng.random((NUM_EXAMPLES, 28, 28)).astype(np.float32)
  given = np.zeros((28, 28), bool)
  given[14:, :14] = True
  condition = np.where(given, target, -1.0).reshape(NUM_EXAMPLES, 784)
  arrays = {"target": target.reshape(NUM_EXAMPLES, 784), "condition": condition}
  model = mnist_quadrant.make_model(config)
  init_fn = lambda key: model.init(key, arrays["target"][:1], arrays["condition"][:1])
  return arrays, init_fn, mnist_quadrant.TASK.loss_fn(config, model)


def setup(example: str):
  """(arrays, init_fn, loss_fn) of `example`; the same in every process."""
  return {"label": _label, "quadrant": _quadrant}[example](np.random.default_rng(0))


def evaluation_case():
  """(fn, params, arrays, rng, batch_size): 13 examples in 4 batches, the
  noise of each batch from its index."""
  arrays = {"x": np.arange(13, dtype=np.float32)}
  fn = lambda params, batch, rng: batch["x"] * params + jax.random.normal(
      rng, batch["x"].shape)
  return fn, np.float32(3.0), arrays, jax.random.PRNGKey(5), 4


def config(epochs: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      batch_size=8, num_epochs=epochs, seed=3, optimizer="adam",
      learning_rate=1e-2, steps_per_dispatch=2, log_every_steps=1,
      checkpoint_every_steps=2, keep_checkpoints=10))


def main(port, count, index, workdir, epochs, path, example, seconds_per_log="0"):
  jax.distributed.initialize(coordinator_address=f"localhost:{port}",
                             num_processes=int(count), process_id=int(index))
  if example == "evaluate":
    fn, params, arrays, rng, batch_size = evaluation_case()
    values = evaluation.map_over_batches(fn, params, arrays, rng, batch_size)
    np.savez(Path(workdir) / f"process_{index}.npz", values=values,
             batches=np.array(list(evaluation.process_batches(4))))
    jax.distributed.shutdown()
    return
  data, init_fn, loss_fn = setup(example)
  logged = []
  def report(progress, metrics):
    logged.append(metrics["loss"])
    time.sleep(float(seconds_per_log))

  source = InMemoryData(data) if path == "in_memory" else streaming_data(data)
  run_config = config(int(epochs))
  state = trainer.train(run_config, Path(workdir), init_fn, loss_fn, source,
                        hooks=hooks.standard(run_config, report=report))
  leaves = [np.asarray(x) for x in jax.tree.leaves(state.params)]
  np.savez(Path(workdir) / f"process_{index}.npz", losses=np.array(logged),
           **{f"param_{i}": leaf for i, leaf in enumerate(leaves)})
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(*sys.argv[1:])
