"""Training data as the trainer consumes it: device-resident or streamed.

Both shuffle deterministically per epoch, so the position in the data is a
function of the step alone and a resumed run sees exactly the batches an
uninterrupted run would have seen. Both drop the last incomplete batch.
"""

import dataclasses
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

if TYPE_CHECKING:  # Only for the annotation: the trainer never imports TensorFlow.
  import tensorflow as tf

__all__ = ["InMemoryData", "StreamingData"]


@dataclasses.dataclass(frozen=True)
class InMemoryData:
  """A dataset small enough to live in device memory.

  The trainer copies `arrays` to every device once, draws each epoch's order
  as a permutation inside jit and runs many steps per dispatch (`lax.scan`).

  Attributes:
    arrays: name -> [num_examples, ...] array; the batch is a dict of these.
  """

  arrays: dict[str, np.ndarray]

  def __post_init__(self):
    sizes = {k: len(v) for k, v in self.arrays.items()}
    if not sizes or len(set(sizes.values())) != 1:
      raise ValueError(f"arrays must share their leading size, got {sizes}")

  @property
  def num_examples(self) -> int:
    """The arrays' shared leading size."""
    return len(next(iter(self.arrays.values())))


@dataclasses.dataclass(frozen=True)
class StreamingData:
  """A dataset streamed from tf.data, for data that does not fit on device.

  Attributes:
    make_dataset: seed -> an unbatched, finite `tf.data.Dataset` of dicts,
      shuffled deterministically by that seed.
    num_examples: examples per epoch.
  """

  make_dataset: Callable[[int], "tf.data.Dataset"]
  num_examples: int

  def batches(self, seed: int, batch_size: int, skip: int,
              shard: tuple[int, int] = (0, 1)) -> Iterator[dict[str, np.ndarray]]:
    """Numpy batches of one epoch, from batch number `skip` on.

    Args:
      shard: (index, count): this process reads examples index, index +
        count, ... of the shuffled epoch (disjoint across processes, together
        the whole epoch), in batches of `batch_size` (its share of the global
        batch).
    """
    index, count = shard
    ds = self.make_dataset(seed)
    if count > 1:
      ds = ds.shard(count, index)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.skip(skip).prefetch(2)
    return ds.as_numpy_iterator()
