"""MNIST conditioned on the class label: the reference PyTorch CVAE, end to end.

It prints the reference's log lines

  Train Epoch: 0 [2000/60000 (3%)]\tLoss: 4360.748535 = 4240.848145 + 119.900520
  ====> Test set loss: 2173.4973

(loss summed over a batch of `batch_size` = BCE + KLD; test loss = mean over
test batches of `reference_test_batch_size` of the batch's summed loss), and
writes results.json, samples.png and reconstructions.png.
"""

import functools
from pathlib import Path

import jax
import ml_collections
import numpy as np

from cvae_jax import evaluation, evaluators, models, objectives, runner
from cvae_jax.data import mnist
from cvae_jax.errors import (require_choice, require_chunks,
                             require_positive_ints)
from cvae_jax.evaluators import pictures
from cvae_jax.models.layers import INITIALISATIONS
from cvae_jax.training import InMemoryData, StreamingData, TrainState, trainer
from cvae_jax.training import results as results_file

__all__ = ["TASK", "train_and_evaluate", "validate", "make_model", "EVALS"]

# Config keys that change the evaluation only (beyond the trained state).
EVALUATION_KEYS = ("eval_batch_size", "reference_test_batch_size",
                   "importance_samples", "importance_chunk_size", "sample_columns")


def make_model(config: ml_collections.ConfigDict):
  """`models.MODELS[config.model_name]` built from the `model` block."""
  require_choice(config, "model_name", tuple(models.MODELS))
  require_positive_ints(config.model, ("hidden_size", "latent_size"), "model.")
  require_choice(config.model, "initialisation", INITIALISATIONS, "model.")
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
  """ConfigError / UserError for settings the task cannot work with."""
  make_model(config)
  require_positive_ints(config, (
      "eval_batch_size", "reference_test_batch_size", "importance_samples",
      "importance_chunk_size", "sample_columns"))
  require_chunks(config, ("importance_samples",), "importance_chunk_size", "")


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


def summary(results: dict, workdir: Path) -> str:
  """The line a run ends with (the last epoch's "====> Test set loss" line
  is the trainer's)."""
  test = results["test"]
  return ("test set loss {:.4f}; negative ELBO {:.4f} nats/image; "
          "importance-sampled NLL (K={}) {:.4f} nats/image; results in {}".format(
              test["test_loss_reference_unit"], test["negative_elbo"],
              results["importance_samples"], test["importance_sampled"],
              workdir / results_file.RESULTS_FILE))


def load_splits(config) -> dict:
  """{"test": arrays, "train": arrays (None when streamed)}, building TFDS
  mnist first if needed."""
  mnist.prepare_mnist(config.data_dir, download=config.download)
  return {"test": mnist.load_mnist_arrays(config.data_dir, "test"),
          "train": (mnist.load_mnist_arrays(config.data_dir, "train")
                    if config.in_memory else None)}


def training_data(config, splits):
  if config.in_memory:
    return InMemoryData(splits["train"])
  return StreamingData(
      functools.partial(mnist.mnist_dataset, config.data_dir, "train"),
      num_examples=mnist.num_examples(config.data_dir, "train"))


def epoch_evaluation(config, model, splits, rng):
  """The trainer's hook: the reference's test loss after every epoch, with
  fresh z draws each epoch (fold_in(rng, epoch)), as the reference's."""
  def evaluate(state: TrainState, epoch: int) -> dict[str, float]:
    return test_loss(config, model, state.params, splits["test"],
                     jax.random.fold_in(rng, epoch))
  return evaluate


def test_loss(config, model, params, test: dict, rng: jax.Array) -> dict:
  """The reference's test loss and the mean single-sample -ELBO (nats/image)."""
  per_image = evaluation.map_over_batches(
      lambda p, batch, r: objectives.negative_elbo(model, p, batch, r).loss,
      params, test, rng,
      config.eval_batch_size, description="test negative ELBO")
  return test_loss_metrics(per_image, config.reference_test_batch_size)


EVALS = ("test_loss", "importance_sampled", "pictures")


def task_evaluators(config, model) -> dict:
  """The library's likelihood evaluators, the final test loss (the last
  epoch's, recomputed with its z draws: the same figures the trainer
  printed) and samples.png, reconstructions.png."""
  def final_test_loss(params, test, rng, workdir):
    del rng, workdir  # The last epoch's draws, not the test stream's.
    last_epoch = jax.random.fold_in(runner.rng_stream(config, "validation"),
                                    config.num_epochs - 1)
    figures = test_loss(config, model, params, test, last_epoch)
    return {"test_loss_reference_unit": figures["test_loss_reference_unit"],
            "negative_elbo": figures["test_negative_elbo_nats_per_image"]}

  # The library's importance-sampled NLL reads the reference's flat keys.
  ctx = evaluators.Context(config, model, evaluators.CVAE, settings={
      "batch_size": "eval_batch_size", "num_samples": "importance_samples",
      "chunk_size": "importance_chunk_size"})
  return {**evaluators.library(ctx),
          "test_loss": evaluators.Evaluator("test_loss", final_test_loss),
          "pictures": pictures.make_label_pictures(
              model, mnist.NUM_CLASSES, config.sample_columns, (28, 28))}


def make_loss_fn(config, model):
  del config
  return lambda params, batch, rng, step: objectives.summed_negative_elbo_loss(
      model, params, batch, rng)


def header(config, test: dict) -> dict:
  return {"model": config.model_name,
          "importance_samples": config.importance_samples,
          "epochs": config.num_epochs}


UNITS = {"test_loss_reference_unit": "the reference's 'Test set loss': the "
         "negative ELBO summed over reference_test_batch_size images, mean "
         "over batches", "negative_elbo": "nats per image (1 sample)",
         "importance_sampled": "-log p(image | label), nats per image"}
TASK = runner.Task(
    name="mnist_label", validate=validate, make_model=make_model,
    load_splits=load_splits,
    make_loss_fn=make_loss_fn, validation=epoch_evaluation,
    evaluators=task_evaluators,
    evals=EVALS, header=header, units=UNITS, training_data=training_data,
    reading=lambda config: mnist.unreadable_records_as_user_errors(config.data_dir),
    evaluation_keys=EVALUATION_KEYS, runtime_keys=("in_memory",),
    report=format_train_log, report_eval=format_eval_log,
    loading_message=mnist.loading_message, summary=summary)
train_and_evaluate = TASK.train_and_evaluate
