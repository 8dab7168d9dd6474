"""Sohn et al. (2015)'s Caltech-UCSD Birds setting, sizes from the authors'
released code: 128 x 128 images, foreground masks; CVAE path 64, 96, 128,
a 32-channel Gaussian latent map, then 96, 64, 48, 48; kernels 9, 5, 3, 3, 3,
5, 5, 5, 5; first conv stride 2, pooling 2, 2, 2, 1, unpooling back to full
size; baseline CNN 64, 96, 128, 128, 96, 64, 48; Adam 3e-4, batch 32, one
latent sample per step, 10% of train held out, horizontal flips, input
omission noise 0.4. Needs TFDS to download caltech_birds2011 (e.g. Colab):

  python -m train.segmentation --config=train/configs/segmentation_cub.py \
      --config.model=hybrid --workdir=DIR

Guesses where the code listing was silent: the baseline's kernels (the CVAE
path's, with its middle conv in place of the latent conv), nearest-neighbour
unpooling, the learning-rate schedule (none), and the number of epochs.
"""

from train.configs import segmentation


def get_config():
  config = segmentation.get_config()
  config.dataset = "caltech_birds2011"
  config.image_size = 128
  config.input_omission_rate = 0.4
  config.horizontal_flip = True
  config.network.update(dict(
      encoder_channels=(64, 96, 128), encoder_kernels=(9, 5, 3),
      latent_channels=32, latent_kernel=3,
      decoder_channels=(96, 64, 48, 48), decoder_kernels=(3, 5, 5, 5, 5),
      first_stride=2, pools=(2, 2, 2, 1),
      baseline_encoder_channels=(64, 96, 128), baseline_middle_channels=128,
      baseline_decoder_channels=(96, 64, 48),
      baseline_kernels=(9, 5, 3, 3, 3, 5, 5, 5)))
  config.data.update(dict(max_train_examples=0, max_eval_examples=0))
  config.learning_rate = 3e-4
  config.batch_size = 32
  config.num_epochs = 100
  config.early_stopping_patience = 5
  config.steps_per_dispatch = 1  # On a GPU / TPU raise it, e.g. 50.
  config.log_every_steps = 50
  config.checkpoint_every_steps = 500
  # 100 samples x 2 images of 128 x 128 decoder maps at once; chunks of 25.
  config.eval.update(dict(batch_size=2, chunk_size=25, num_images=0))
  return config
