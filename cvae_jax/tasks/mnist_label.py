"""MNIST conditioned on the class label: the reference PyTorch CVAE, end to end.

`train_and_evaluate(config, workdir)` is what `python -m train.mnist_label`
and the notebook call. It prints the reference's log lines

  Train Epoch: 0 [2000/60000 (3%)]\tLoss: 4360.748535 = 4240.848145 + 119.900520
  ====> Test set loss: 2173.4973

(loss summed over a batch of `batch_size` = BCE + KLD; test loss = mean over
test batches of `reference_test_batch_size` of the batch's summed loss), and at
the end writes `results.json`, `samples.png` and `reconstructions.png`.

`validate(config, workdir)` checks a config without importing TensorFlow.
Rerunning a finished workdir prints its figures from results.json; with other
evaluation settings (`EVALUATION_KEYS`) it recomputes only what they change.
"""

import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cvae_jax import estimators, evaluation, models, objectives, plotting, sampling
from cvae_jax.data import mnist
from cvae_jax.errors import ConfigError, check_workdir, require_positive_ints
from cvae_jax.models.layers import INITIALISATIONS
from cvae_jax.training import InMemoryData, StreamingData, TrainState, trainer
from cvae_jax.training import results as results_file

# Config keys each evaluated output depends on (beyond the trained state).
TEST_LOSS_KEYS = ("eval_batch_size", "reference_test_batch_size")
NLL_KEYS = ("eval_batch_size", "importance_samples", "importance_chunk_size")
SAMPLES_KEYS = ("sample_columns",)
EVALUATION_KEYS = (*TEST_LOSS_KEYS, *NLL_KEYS, *SAMPLES_KEYS)


def make_model(config: ml_collections.ConfigDict):
  if config.model_name not in models.MODELS:
    raise ConfigError(f"unknown model_name {config.model_name!r}; use one of "
                      f"{sorted(models.MODELS)}")
  require_positive_ints(config.model, ("hidden_size", "latent_size"), "model.")
  if config.model.initialisation not in INITIALISATIONS:
    raise ConfigError(f"model.initialisation must be one of {INITIALISATIONS}, "
                      f"got {config.model.initialisation!r}")
  return models.MODELS[config.model_name](**config.model)


def format_train_log(progress: trainer.Progress, metrics: dict[str, float]) -> str:
  """The reference's line: epoch, examples seen, % of epoch, summed loss terms."""
  return ("Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f} = {:.6f} + {:.6f}"
          .format(progress.epoch, progress.step_in_epoch * progress.batch_size,
                  progress.num_examples,
                  100.0 * progress.step_in_epoch / progress.steps_per_epoch,
                  metrics["loss"], metrics["reconstruction"], metrics["kl"]))


def format_eval_log(epoch: int, metrics: dict[str, float]) -> str:
  del epoch
  return ("====> Test set loss: {:.4f}  ({:.4f} nats per image)"
          .format(metrics["test_loss_reference_unit"],
                  metrics["test_negative_elbo_nats_per_image"]))


def validate(config: ml_collections.ConfigDict, workdir: str | Path) -> None:
  """Raises UserError / ConfigError for a config or workdir that cannot work;
  imports no TensorFlow (entry points call it before loading data)."""
  workdir = Path(workdir).expanduser().absolute()
  check_workdir(workdir)
  make_model(config)
  require_positive_ints(config, (
      "eval_batch_size", "reference_test_batch_size", "importance_samples",
      "importance_chunk_size", "sample_columns"))
  if config.importance_samples % config.importance_chunk_size:
    raise ConfigError(
        f"importance_samples={config.importance_samples} must be a multiple of "
        f"importance_chunk_size={config.importance_chunk_size}")
  trainer.validate_trainer_config(config)  # Before loading data: fail fast.


def negative_elbo_per_image(model, params, batch, rng) -> jax.Array:
  """[batch] single-sample negative ELBO in nats per image."""
  return objectives.negative_elbo(model, params, batch, rng).loss


def negative_log_likelihood_per_image(model, num_samples, chunk_size, params,
                                      batch, rng) -> jax.Array:
  """[batch] importance-sampled -log p(image | label) in nats per image."""
  return -estimators.cvae_log_likelihood(model, params, batch, rng, num_samples,
                                         chunk_size=chunk_size)


def test_loss_metrics(per_image: np.ndarray, reference_batch: int) -> dict:
  """Per-image negative ELBOs -> the reference's unit and nats per image."""
  mean = float(np.mean(per_image))
  usable = len(per_image) - len(per_image) % reference_batch
  if usable:  # Mean over full batches of the batch's sum, as the reference.
    reference = float(np.mean(np.sum(
        per_image[:usable].reshape(-1, reference_batch), axis=1)))
  else:
    reference = mean * reference_batch
  return {"test_loss_reference_unit": reference,
          "test_negative_elbo_nats_per_image": mean}


def _sample_grid(model, params, rng, num_columns: int) -> np.ndarray:
  """[10 digits, num_columns, 28, 28] samples, row d conditioned on digit d."""
  labels = jnp.repeat(jnp.arange(mnist.NUM_CLASSES), num_columns)
  images = jax.jit(functools.partial(sampling.generate, model))(params, labels, rng)
  return np.asarray(images).reshape(mnist.NUM_CLASSES, num_columns, 28, 28)


def _reconstruction_grid(model, params, arrays, rng, count: int) -> np.ndarray:
  """[2, count, 28, 28]: test images (top) and their reconstructions (bottom)."""
  target, condition = arrays["target"][:count], arrays["condition"][:count]
  recon = jax.jit(functools.partial(sampling.reconstruct, model))(
      params, target, condition, rng)
  return np.stack([target, np.asarray(recon)]).reshape(2, count, 28, 28)


def summary_lines(results: dict, workdir: Path) -> list[str]:
  """The final figures, as the end of a run prints them."""
  return [format_eval_log(results["epochs"] - 1, results),
          "test negative ELBO: {:.4f} nats/image; importance-sampled NLL "
          "(K={}): {:.4f} nats/image; results in {}".format(
              results["test_negative_elbo_nats_per_image"],
              results["importance_samples"],
              results["test_importance_sampled_nll_nats_per_image"],
              workdir / results_file.RESULTS_FILE)]


def _load_data(config: ml_collections.ConfigDict):
  """(test arrays, training data), building TFDS mnist first if needed."""
  print(f"loading MNIST from {config.data_dir} (TensorFlow, TFDS)...",
        flush=True)
  mnist.prepare_mnist(config.data_dir, download=config.download)
  test = mnist.load_mnist_arrays(config.data_dir, "test")
  if config.in_memory:
    return test, InMemoryData(mnist.load_mnist_arrays(config.data_dir, "train"))
  return test, StreamingData(
      functools.partial(mnist.mnist_dataset, config.data_dir, "train"),
      num_examples=mnist.num_examples(config.data_dir, "train"))


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | Path) -> dict:
  """Trains (resuming from `workdir` if it holds checkpoints), evaluates and
  writes results.json, samples.png and reconstructions.png there.

  A finished workdir is not trained or evaluated again: its results.json is
  printed and returned, or, when only `EVALUATION_KEYS` differ, what they
  change is recomputed.

  Returns:
    The results dict written to results.json.
  """
  workdir = Path(workdir).expanduser().absolute()
  validate(config, workdir)
  finished = results_file.finished_run(workdir, config, EVALUATION_KEYS,
                                       runtime_keys=("in_memory",))
  if finished is not None:
    results_file.announce(workdir, finished)
    if not finished.changed:
      print("\n".join(summary_lines(finished.results, workdir)), flush=True)
      return finished.results
  model = make_model(config)
  workdir.mkdir(parents=True, exist_ok=True)
  test, train_data = _load_data(config)

  example = {k: v[:1] for k, v in test.items()}
  init_fn = lambda rng: model.init(rng, example["target"], example["condition"])
  loss_fn = functools.partial(objectives.summed_negative_elbo_loss, model)
  # Evaluation keys are apart from the trainer's (split(PRNGKey(seed), 3)).
  eval_rng, nll_rng, picture_rng = jax.random.split(
      jax.random.fold_in(jax.random.PRNGKey(config.seed), 1), 3)
  elbo_fn = functools.partial(negative_elbo_per_image, model)

  evaluated = {}  # epoch -> metrics; the last epoch's are the final ones.

  def evaluate(state: TrainState, epoch: int) -> dict[str, float]:
    per_image = evaluation.map_over_batches(
        elbo_fn, state.params, test, jax.random.fold_in(eval_rng, epoch),
        config.eval_batch_size, description="test negative ELBO")
    evaluated[epoch] = test_loss_metrics(per_image,
                                         config.reference_test_batch_size)
    return evaluated[epoch]

  start = time.time()
  with mnist.unreadable_records_as_user_errors(config.data_dir):
    state = trainer.train(config, workdir, init_fn, loss_fn, train_data,
                          evaluate=evaluate, report=format_train_log,
                          report_eval=format_eval_log)
  train_seconds = time.time() - start

  previous = finished.results if finished else {}
  redo = lambda keys: finished is None or finished.changes(*keys)
  last_epoch = config.num_epochs - 1
  shown = last_epoch in evaluated  # The trainer printed its test loss line.
  if redo(TEST_LOSS_KEYS):  # Evaluated here if resumed at the end.
    final = evaluated.get(last_epoch) or evaluate(state, last_epoch)
  else:
    final = {k: previous[k] for k in ("test_loss_reference_unit",
                                      "test_negative_elbo_nats_per_image")}
  nll_key = "test_importance_sampled_nll_nats_per_image"
  if redo(NLL_KEYS):
    print(f"importance-sampled NLL, K={config.importance_samples}, "
          f"{len(test['target']):,} test images...", flush=True)
    start = time.time()
    nll = float(np.mean(evaluation.map_over_batches(
        functools.partial(negative_log_likelihood_per_image, model,
                          config.importance_samples,
                          config.importance_chunk_size),
        state.params, test, nll_rng, config.eval_batch_size,
        description=f"importance-sampled NLL, K={config.importance_samples}")))
    nll_seconds = time.time() - start
  else:
    nll, nll_seconds = previous[nll_key], previous["importance_sampling_seconds"]
  results = {
      **final,
      nll_key: nll,
      "importance_samples": config.importance_samples,
      "num_test_images": len(test["target"]),
      "steps": int(state.step),
      "epochs": config.num_epochs,
      "train_seconds_this_run": previous.get("train_seconds_this_run",
                                             train_seconds),
      "importance_sampling_seconds": nll_seconds,
      "devices": [str(d) for d in jax.local_devices()],
      "config": config.to_dict(),
  }
  results_file.write_results(workdir, results)

  grid_rng, recon_rng = jax.random.split(picture_rng)
  if redo(SAMPLES_KEYS):
    plotting.save_image_grid(
        _sample_grid(model, state.params, grid_rng, config.sample_columns),
        workdir / "samples.png")
  if finished is None:
    plotting.save_image_grid(
        _reconstruction_grid(model, state.params, test, recon_rng, 10),
        workdir / "reconstructions.png")
  lines = summary_lines(results, workdir)
  print("\n".join(lines[1:] if shown else lines), flush=True)
  return results
