"""The generic trainer: knows nothing about CVAEs.

`trainer.train(config, workdir, init_fn, loss_fn, data, hooks=...)` takes an
init function, a loss function of (params, batch, rng, step), training data,
a config and the hooks to call around its loop (`hooks.standard(config, ...)`:
evaluation, log lines, TensorBoard, run identity and history, early
stopping), and runs data-parallel over every device.
"""

from cvae_jax.errors import Interrupted
from cvae_jax.training.input import InMemoryData, StreamingData
from cvae_jax.training.state import TrainState
from cvae_jax.training.trainer import train

__all__ = ["InMemoryData", "StreamingData", "TrainState", "Interrupted", "train",
           # The submodules.
           "checkpointing", "hooks", "input", "optimizers", "results", "state",
           "tensorboard", "trainer"]
