"""Kohl et al. (2018)'s LIDC-IDRI setting: 128 x 128 lesion crops, 4 graders.

  python -m train.prob_unet --config=train/configs/prob_unet_lidc.py \
      --config.data.lidc_path=/path/to/data_lidc.pickle \
      --workdir=workdirs/prob_unet_lidc

--config.data.lidc_path may also be PHiSeg's .hdf5 file or DeepMind's PNG
crop folder; the forms and where to get them: cvae_jax/data/lidc.py. Published
sizes: U-Net channels 32, 64, 128, 192 with 3 convs a block, latent 6,
beta 1, 3 fcomb 1x1 convs, Adam 1e-4, batch 32 (the batch is our choice; the
paper trains 240k iterations, far beyond a CPU: set --config.num_epochs).
Splits are by patient (70/15/15 %), never by crop. The training recipe is
the offline set's (train/configs/prob_unet.py: warm-up and cosine decay, here
from a peak of 1e-4, KL warm-up, clipping, the checkpoint of the best
validation GED).

The successors at their published sizes (128 x 128):
* hpu_net (Kohl et al. 2019): 8 levels of 24, 48, 96, 192, 192, 192, 192, 192
  channels, 3 residual blocks of 3 convs per level, latents of 1 channel at
  the 4 coarsest scales (1, 2, 4, 8 px); GECO with kappa = 0.05 nats per
  pixel of the top 2% of pixels by loss (819.2 per image at this scale:
  the reconstruction is their mean times the pixels), decay 0.99, rate 0.01;
* phiseg (Baumgartner et al. 2019): 7 resolution levels of 32, 64, 128, 192,
  192, 192, 192 channels, 3 convs each, 5 latent levels of 2 channels;
* ssn (Monteiro et al. 2020): this U-Net with a rank-10 covariance factor
  and 20 draws in the loss.
"""

from train.configs import prob_unet


def get_config():
  config = prob_unet.get_config()
  config.dataset = "lidc"
  config.image_size = 128
  config.network.channels = (32, 64, 128, 192)
  config.learning_rate = 1e-4
  config.num_epochs = 100
  config.data.max_train_examples = 0
  config.data.max_eval_examples = 0
  config.log_every_steps = 50
  config.checkpoint_every_steps = 500
  config.eval.num_images = 0  # Every test crop.
  config.hpu_network.update(channels=(24, 48, 96, 192, 192, 192, 192, 192),
                            latent_channels=(1, 1, 1, 1), blocks=3)
  config.phiseg_network.update(channels=(32, 64, 128, 192, 192, 192, 192),
                               latent_levels=5, latent_channels=2)
  config.recipes.hpu_net = dict(
      geco=dict(enabled=True, kappa=0.05 * 128 * 128, decay=0.99, rate=0.01),
      top_k_fraction=0.02)
  config.recipes.phiseg = {}
  return config
