"""The ambiguous-segmentation models, each built from its own block of the
config (train/configs/prob_unet.py): `BUILDERS[name](config)` -> the flax
module, after a ConfigError naming the field for an impossible block.

  unet       prob_unet.DeterministicUNet      config.network
  prob_unet  prob_unet.ProbabilisticUNet      config.network
  sohn_cvae  segmentation.SegmentationCVAE    config.sohn_network
  hpu_net    hpu_net.HierarchicalProbabilisticUNet  config.hpu_network
  phiseg     phiseg.PHiSeg                    config.phiseg_network
  ssn        ssn.StochasticSegmentationNetwork      config.ssn_network
"""

from cvae_jax.models import hpu_net, phiseg, prob_unet, segmentation, ssn

__all__ = ["BUILDERS", "NETWORKS"]

# The config blocks the models read (a run's identity holds them all).
NETWORKS = ("network", "sohn_network", "hpu_network", "phiseg_network", "ssn_network")


def _unet(config):
  net = config.network
  return prob_unet.DeterministicUNet(tuple(net.channels), net.convs_per_block)


def _prob_unet(config):
  net = config.network
  return prob_unet.ProbabilisticUNet(
      tuple(net.channels), net.latent_size, net.convs_per_block,
      net.fcomb_convs, net.log_variance_bound)


def _sohn_cvae(config):  # No multiscale targets: one mask per image.
  return segmentation.from_network_config(config.sohn_network, config.image_size,
                                          multiscale_levels=0)[1]


def _hpu_net(config):
  net = config.hpu_network
  hpu_net.check_network(net, config.image_size)
  return hpu_net.HierarchicalProbabilisticUNet(
      tuple(net.channels), tuple(net.latent_channels), net.blocks,
      net.convs_per_block, net.log_variance_bound)


def _phiseg(config):
  net = config.phiseg_network
  phiseg.check_network(net, config.image_size)
  return phiseg.PHiSeg(tuple(net.channels), net.latent_levels, net.latent_channels,
                       net.convs_per_block, net.log_variance_bound)


def _ssn(config):  # The U-Net of config.network, its own heads.
  net = config.network
  ssn.check_network(config.ssn_network)
  return ssn.StochasticSegmentationNetwork(
      tuple(net.channels), net.convs_per_block, config.ssn_network.rank,
      net.log_variance_bound)


BUILDERS = {"unet": _unet, "prob_unet": _prob_unet, "sohn_cvae": _sohn_cvae,
            "hpu_net": _hpu_net, "phiseg": _phiseg, "ssn": _ssn}
