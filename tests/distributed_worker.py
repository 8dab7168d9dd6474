"""One process of a multi-process training run (tests/test_distributed.py):
  python tests/distributed_worker.py PORT NUM_PROCESSES PROCESS_ID WORKDIR \
      EPOCHS {in_memory,streamed}
Trains the label CVAE of tests/test_trainer.py on its fixed arrays with the
global batch 8 and writes WORKDIR/process_<id>.npz: the logged losses and the
final parameters."""

import functools
from pathlib import Path
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cvae_jax import objectives
from cvae_jax.models import LabelCVAE
from cvae_jax.training import InMemoryData, StreamingData, trainer


def arrays(num_examples=48, seed=0):
  rng = np.random.default_rng(seed)
  return {"target": rng.random((num_examples, 784)).astype(np.float32),
          "condition": rng.integers(0, 10, num_examples).astype(np.int32)}


MODEL = LabelCVAE(hidden_size=16, latent_size=2)
INIT_FN = lambda rng: MODEL.init(rng, jnp.zeros((1, 784)), jnp.zeros((1,), jnp.int32))


LOSS_FN = functools.partial(objectives.summed_negative_elbo_loss, MODEL)


def config(epochs: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      batch_size=8, num_epochs=epochs, seed=3, optimizer="adam",
      learning_rate=1e-2, steps_per_dispatch=2, log_every_steps=1,
      checkpoint_every_steps=2, keep_checkpoints=10))


def streamed(data):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  def make_dataset(seed):
    return tf.data.Dataset.from_tensor_slices(data).shuffle(
        len(data["target"]), seed=seed, reshuffle_each_iteration=False)
  return StreamingData(make_dataset, len(data["target"]))


def main(port, count, index, workdir, epochs, path):
  jax.distributed.initialize(coordinator_address=f"localhost:{port}",
                             num_processes=int(count), process_id=int(index))
  data = arrays()
  logged = []
  def report(progress, metrics):
    logged.append(metrics["loss"])

  source = InMemoryData(data) if path == "in_memory" else streamed(data)
  state = trainer.train(config(int(epochs)), Path(workdir), INIT_FN,
                        LOSS_FN, source, report=report)
  leaves = [np.asarray(x) for x in jax.tree.leaves(state.params)]
  np.savez(Path(workdir) / f"process_{index}.npz", losses=np.array(logged),
           **{f"param_{i}": leaf for i, leaf in enumerate(leaves)})
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(*sys.argv[1:7])
