"""Random training arrays of each task's shapes, and the task's model,
init_fn and loss_fn on them: what every benchmark that times a step uses, so
that no data set is read. The arrays are what
`task.load_splits(config)["train"]` holds (B = num_examples, S =
config.image_size; values uniform in [0, 1), mask pixels 1 with probability
0.3): mnist_label "target" [B, 784], "condition" [B] int32 labels;
mnist_quadrant `quadrants.split_by_quadrants` of [B, 784] images;
segmentation "image" [B, S, S, C] (C = 3 for the TFDS photo sets, else 1),
"masks" [B, 1, S, S]; prob_unet the same with 4 graders' masks; bbox
"image" [B, S, S, 1], "boxes" [B, M, 4] in [0.1, 0.9) (M =
config.data.max_digits), "labels" [B, M] int32, "query" [B] int32 0.
"""

import numpy as np

from cvae_jax import runner
from cvae_jax.data import quadrants

COLOUR_DATASETS = ("caltech_birds2011", "oxford_iiit_pet")  # RGB images.
GRADERS = {"segmentation": 1, "prob_unet": 4}
MASK_DENSITY = 0.3


def training_arrays(task, config, num_examples: int | None = None,
                    seed: int = 0) -> dict[str, np.ndarray]:
  """Random arrays of `task`'s (a cvae_jax.tasks module) training shapes at
  `config` (see the module docstring); num_examples: config.batch_size."""
  name = task.__name__.rsplit(".", 1)[-1]  # "segmentation" for ...tasks.segmentation
  rng = np.random.default_rng(seed)
  n = num_examples or config.batch_size
  if name == "mnist_label":
    return {"target": rng.random((n, 784), np.float32),
            "condition": rng.integers(0, 10, n).astype(np.int32)}
  if name == "mnist_quadrant":
    return quadrants.split_by_quadrants(rng.random((n, 784), np.float32),
                                        config.num_quadrants, config.quadrant_order)
  s = config.image_size
  channels = 3 if config.get("dataset") in COLOUR_DATASETS else 1
  arrays = {"image": rng.random((n, s, s, channels), np.float32)}
  if name == "bbox":
    m = config.data.max_digits
    return {**arrays, "boxes": rng.uniform(0.1, 0.9, (n, m, 4)).astype(np.float32),
            "labels": rng.integers(0, 10, (n, m)).astype(np.int32),
            "query": np.zeros(n, np.int32)}
  masks = rng.random((n, GRADERS[name], s, s)) < MASK_DENSITY
  return {**arrays, "masks": masks.astype(np.float32)}


def init_batch(task, config, arrays: dict) -> dict:
  """The {"condition", "target"} batch of `arrays` that `task`'s model sees
  (its runner spec's evaluation batch: the first grader, the query box)."""
  return task.TASK.batch(config, arrays)


def step_pieces(task, config, arrays: dict):
  """(model, init_fn(rng) -> params, loss_fn) of `task` at `config`, as the
  runner builds them but with no pretrained part, initialised
  (`runner.init_params`) on the first of `arrays`."""
  model = task.make_model(config)
  batch = init_batch(task, config, {k: v[:1] for k, v in arrays.items()})
  return (model, lambda rng: runner.init_params(model, rng, batch),
          task.TASK.loss_fn(config, model))
