"""Bounding boxes on the offline MNIST box set (cvae_jax/data/mnist_boxes.py):
64 x 64 canvases with 2-4 digits, the target the box of one of them.

  python -m train.bbox --config=train/configs/bbox.py \
      --config.model=cvae --config.condition=class --workdir=DIR

model: regressor | mdn | cvae | hybrid. condition: image (any digit's box)
| class (the box of a digit of the given class).
"""

import ml_collections

from cvae_jax import configs


def get_config() -> ml_collections.ConfigDict:
  config = configs.trainer_defaults()  # Every trainer field; ours below.
  config.model = "cvae"  # regressor | mdn | cvae | hybrid
  config.condition = "image"  # image | class
  config.dataset = "mnist_boxes"  # or voc/2007 (needs TFDS to download it)
  config.image_size = 64
  # Measured per model (docs/speed.md): this net's step is within 5% on
  # either library, YNNPACK the faster in the last interleaved run.
  config.cpu_convolutions = "ynnpack"
  config.hybrid_alpha = 0.5  # Weight of the CVAE objective in "hybrid".

  config.data = ml_collections.ConfigDict(dict(
      min_digits=2, max_digits=4,  # Digits per canvas (VOC: objects kept, max).
      max_box_iou=0.1,  # Largest IoU between two digits' boxes.
      seed=0,
      max_train_examples=10_000,  # Canvases; 0: all (~13,300 from 40,000 digits).
      max_eval_examples=1_000))  # Validation and test canvases; 0: all.
  config.data_dir = "~/tensorflow_datasets"
  config.download = True
  config.validation_size = 10_000  # Last digits of TFDS train (VOC: its own split).

  config.network = ml_collections.ConfigDict(dict(
      channels=(16, 32, 32), kernels=(5, 3, 3), pools=(2, 2, 1), first_stride=2,
      features=128, hidden=128,
      latent=2,  # CVAE latent size.
      cvae_box_std=0.02,  # Fixed std of the CVAE's p(y|x,z); 0: learned.
      num_components=5,  # MDN mixture components.
      mdn_box_std=0.0,  # Fixed std of the MDN's components; 0: learned.
      min_std=0.005))  # Floor of every learned box std (image sides): 1/3 px at 64.

  config.seed = 0
  config.batch_size = 32
  config.num_epochs = 8  # At most (the table fits in ~35 min on 2 CPU cores).
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  config.compute_dtype = "float32"  # or "bfloat16": mixed precision (TPU).
  config.early_stopping_metric = "validation_loss"
  config.early_stopping_patience = 3

  # One step per dispatch: XLA:CPU runs convolutions inside the multi-step
  # lax.scan ~10-30x slower (cvae_jax/training/trainer.py).
  config.steps_per_dispatch = 1
  config.log_every_steps = 100
  config.checkpoint_every_steps = 312  # One epoch of 10,000 canvases.
  config.keep_checkpoints = 2

  config.eval = ml_collections.ConfigDict(dict(
      batch_size=50,
      num_images=500,  # Test canvases evaluated (0: all loaded ones).
      num_box_samples=20,  # K boxes per canvas for best-of-k, coverage, precision.
      best_of=(1, 5, 20),
      num_samples=100,  # S of the CVAE's importance-sampled NLL.
      figure_images=8,
      figure_class=-1))  # -1: the query box's class; 0-9: ask for this class.
  # Evaluators to run (cvae_jax.evaluators and the task's own; "exact" applies
  # to the regressor and the MDN, "importance_sampled" to a CVAE).
  config.evals = ("boxes", "exact", "importance_sampled", "pictures")
  return config
