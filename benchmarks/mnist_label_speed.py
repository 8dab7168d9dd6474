"""Speed of the label-conditioned MNIST CVAE: train step, epoch, pipeline, IS-NLL.

  python -m benchmarks.mnist_label_speed [--data_dir=~/tensorflow_datasets]

Measures, on whatever devices JAX finds (all local devices, data-parallel):
  * train-step throughput (images/s) at batch 20, 128 and 1024, device-resident
    data, steady state (second epoch of a run, so compile time is excluded);
  * the reference config's epoch wall time (batch 20, 3000 steps, checkpoint
    included), in-memory and streamed from tf.data, with 3000 or 100 steps per
    dispatch, and the first epoch's extra time (compilation);
  * loading the TFDS splits into memory;
  * the importance-sampled NLL (K=1000) over the 10,000 test images.
Prints a Markdown table; `--json=PATH` also writes the figures.
"""

import functools
import json
import tempfile
import time

from absl import app, flags
import jax
import numpy as np

from cvae_jax import evaluation, objectives
from cvae_jax.data import mnist
from cvae_jax.tasks import mnist_label
from cvae_jax.training import InMemoryData, StreamingData, trainer
from train.configs import mnist_label as mnist_label_config

_DATA_DIR = flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "TFDS data_dir.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures here.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["20", "128", "1024"],
                                 "Train-step batch sizes to time.")
_IS_SAMPLES = flags.DEFINE_integer("importance_samples", 1000, "K for IS-NLL.")
_EPOCH_ONLY = flags.DEFINE_bool("epoch_only", False,
                                "Time only the reference-config epoch (3 epochs).")


def _epoch_times(config, train_data, num_epochs=3):
  """Wall time of each epoch of a fresh run (evaluation hook as a stopwatch)."""
  config = config.copy_and_resolve_references()
  config.num_epochs = num_epochs
  config.checkpoint_every_steps = 10**9  # Saves only at epoch ends.
  model = mnist_label.make_model(config)
  example = {k: v[:1] for k, v in train_data_example(train_data).items()}
  init_fn = lambda rng: model.init(rng, example["target"], example["condition"])
  loss_fn = functools.partial(objectives.summed_negative_elbo_loss, model)
  stamps = [time.perf_counter()]

  def stopwatch(state, epoch):
    jax.block_until_ready(state.params)
    stamps.append(time.perf_counter())
    return {}

  with tempfile.TemporaryDirectory() as workdir:
    trainer.train(config, workdir, init_fn, loss_fn, train_data,
                  evaluate=stopwatch, report=lambda *a: None,
                  report_eval=lambda *a: None)
  return np.diff(stamps)


def train_data_example(train_data):
  if isinstance(train_data, InMemoryData):
    return train_data.arrays
  return next(train_data.batches(0, 1, 0))


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

  # Steady state: the fastest epoch after the first (this machine is noisy).
  in_memory = InMemoryData(train)
  ref_times = _epoch_times(config, in_memory)
  figures["reference_epoch_s"] = float(min(ref_times[1:]))
  figures["reference_epoch_median_s"] = float(np.median(ref_times[1:]))
  figures["first_epoch_extra_s"] = float(ref_times[0] - min(ref_times[1:]))
  if _EPOCH_ONLY.value:
    _report(figures)
    return
  per_log_interval = config.copy_and_resolve_references()
  per_log_interval.steps_per_dispatch = config.log_every_steps
  figures["reference_epoch_100_steps_per_dispatch_s"] = float(
      min(_epoch_times(per_log_interval, in_memory)[1:]))
  streamed = StreamingData(
      functools.partial(mnist.mnist_dataset, data_dir, "train"),
      mnist.num_examples(data_dir, "train"))
  figures["reference_epoch_streamed_s"] = float(
      min(_epoch_times(config, streamed)[1:]))

  for batch_size in map(int, _BATCH_SIZES.value):
    sized = config.copy_and_resolve_references()
    sized.batch_size = batch_size
    seconds = min(_epoch_times(sized, in_memory)[1:])
    steps = 60_000 // batch_size
    figures[f"train_images_per_s_batch_{batch_size}"] = steps * batch_size / seconds
    figures[f"train_ms_per_step_batch_{batch_size}"] = 1e3 * seconds / steps

  model = mnist_label.make_model(config)
  params = model.init(jax.random.PRNGKey(0), test["target"][:1],
                      test["condition"][:1])
  nll_fn = functools.partial(mnist_label.negative_log_likelihood_per_image,
                             model, _IS_SAMPLES.value, config.importance_chunk_size)
  small = {k: v[:config.eval_batch_size] for k, v in test.items()}
  evaluation.map_over_batches(nll_fn, params, small, jax.random.PRNGKey(1),
                              config.eval_batch_size)  # Compile.
  start = time.perf_counter()
  evaluation.map_over_batches(nll_fn, params, test, jax.random.PRNGKey(1),
                              config.eval_batch_size)
  figures[f"importance_sampled_nll_k{_IS_SAMPLES.value}_10k_images_s"] = (
      time.perf_counter() - start)

  _report(figures)


def _report(figures: dict) -> None:
  print("| figure | value |\n| --- | --- |")
  for key, value in figures.items():
    print(f"| {key} | {value if isinstance(value, list) else f'{value:.4g}'} |")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(figures, f, indent=2)


if __name__ == "__main__":
  app.run(main)
