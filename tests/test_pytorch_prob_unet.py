"""The PyTorch Prob U-Net of benchmarks/ computes the flax model's function
(skipped where torch, a benchmark-only package, is not installed)."""

import pytest

torch = pytest.importorskip("torch")

# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import prob_unet_speed, pytorch_common, pytorch_prob_unet
from cvae_jax.tasks import prob_unet


def test_same_parameters_and_losses_as_flax():
  config = prob_unet_speed._config("offline")  # pylint: disable=protected-access
  config.image_size, config.batch_size = 16, 3
  config.network.channels = (4, 6, 8)
  config.network.convs_per_block = 2
  config.beta = 0.5
  model = prob_unet.make_model(config)
  params = prob_unet_speed.init_params(config, model)
  torch_model = pytorch_prob_unet.ProbabilisticUNet(config.network, 1, config.beta)
  assert pytorch_common.num_params(torch_model) == sum(
      x.size for x in __import__("jax").tree.leaves(params))
  difference = prob_unet_speed.check_same_model(
      config, prob_unet_speed.with_random_heads(params, scale=0.5),
      torch_model, prob_unet_speed.random_arrays(config))
  assert difference["loss"] < 1e-5 and difference["logits"] < 1e-5, difference
