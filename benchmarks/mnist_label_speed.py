"""Speed of the label-conditioned MNIST CVAE: train step, epoch, pipeline, IS-NLL.

  python -m benchmarks.mnist_label_speed [--data_dir=~/tensorflow_datasets]

Measures, on all local devices, with the task's own model and loss on the
real MNIST splits: the reference config's epoch (batch 20, checkpoint
included; steady state: the fastest epoch after the first) and the first
epoch's extra time (compilation); train-step throughput at BATCH_SIZES;
loading the TFDS splits; the importance-sampled NLL (K=IS_SAMPLES) over the
test images.
`--epoch_only` (what `speed_table` runs) times only the reference epoch.
Prints a Markdown table; `--json=PATH` also writes the figures.
"""

import tempfile
import time

from absl import flags
import jax
import numpy as np

from benchmarks import fake_data, harness, speed_harness
from cvae_jax import estimators, evaluation
from cvae_jax.data import mnist
from cvae_jax.tasks import mnist_label
from cvae_jax.training import InMemoryData
from train.configs import mnist_label as mnist_label_config

_DATA_DIR = flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "TFDS data_dir.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures here.")
BATCH_SIZES = (20, 128, 1024)  # Of the train-step timings.
IS_SAMPLES = 1000  # K of the IS-NLL timing.
_EPOCH_ONLY = flags.DEFINE_bool("epoch_only", False,
                                "Time only the reference-config epoch (3 epochs).")


def epoch_seconds(config, data, example: dict, num_epochs: int = 3) -> np.ndarray:
  """Wall seconds of each epoch of a fresh run on `data` (initialised on
  `example` arrays), from the state's being ready, then from the previous
  epoch's end."""
  config = config.copy_and_resolve_references()
  config.num_epochs = num_epochs
  _, init_fn, loss_fn = fake_data.step_pieces(mnist_label, config, example)
  with tempfile.TemporaryDirectory() as workdir:
    clock = speed_harness.timed_training(config, workdir, init_fn, loss_fn, data)
  return np.diff([clock.begun, *(clock.ended[e] for e in range(num_epochs))])


def main(argv):
  del argv
  data_dir = _DATA_DIR.value
  figures = {"devices": [str(d) for d in jax.local_devices()]}
  mnist.prepare_mnist(data_dir)
  start = time.perf_counter()
  train = mnist.load_mnist_arrays(data_dir, "train")
  test = mnist.load_mnist_arrays(data_dir, "test")
  figures["load_splits_into_memory_s"] = time.perf_counter() - start
  config = mnist_label_config.get_config()
  config.data_dir = data_dir
  steady = lambda seconds: float(min(seconds[1:]))

  in_memory = InMemoryData(train)
  reference = epoch_seconds(config, in_memory, test)
  figures.update(reference_epoch_s=steady(reference),
                 reference_epoch_median_s=float(np.median(reference[1:])),
                 first_epoch_extra_s=float(reference[0] - steady(reference)))
  if not _EPOCH_ONLY.value:
    for batch_size in BATCH_SIZES:
      sized = config.copy_and_resolve_references()
      sized.batch_size = batch_size
      steps = len(train["target"]) // batch_size
      seconds = steady(epoch_seconds(sized, in_memory, test))
      figures[f"train_images_per_s_batch_{batch_size}"] = steps * batch_size / seconds
      figures[f"train_ms_per_step_batch_{batch_size}"] = 1e3 * seconds / steps
    model, init_fn, _ = fake_data.step_pieces(mnist_label, config, test)
    params = init_fn(jax.random.PRNGKey(0))
    nll = lambda params, batch, rng: -estimators.cvae_log_likelihood(
        model, params, batch, rng, IS_SAMPLES,
        chunk_size=min(config.importance_chunk_size, IS_SAMPLES))
    for arrays in ({k: v[:config.eval_batch_size] for k, v in test.items()}, test):
      start = time.perf_counter()  # The first pass compiles.
      evaluation.map_over_batches(nll, params, arrays, jax.random.PRNGKey(1),
                                  config.eval_batch_size)
    figures[f"importance_sampled_nll_k{IS_SAMPLES}_10k_images_s"] = (
        time.perf_counter() - start)
  print(harness.markdown(["figure", "value"], [
      [key, str(value) if isinstance(value, list) else f"{value:.4g}"]
      for key, value in figures.items()]))
  speed_harness.write_json(_JSON.value, figures)


if __name__ == "__main__":
  harness.run(main)
