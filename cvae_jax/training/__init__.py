"""The generic trainer: knows nothing about CVAEs.

It takes an init function, a loss function of (params, batch, rng), training
data and a config, and runs data-parallel over all local devices.
"""

from cvae_jax.training.input import InMemoryData, StreamingData
from cvae_jax.training.state import TrainState
from cvae_jax.training.trainer import Interrupted, train

__all__ = ["InMemoryData", "StreamingData", "TrainState", "Interrupted", "train"]
