"""The PyTorch box CVAE of benchmarks/ computes the flax model's function
(skipped where torch, a benchmark-only package, is not installed)."""

import jax
import pytest

torch = pytest.importorskip("torch")

# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import pytorch_bbox, pytorch_common
from cvae_jax.tasks import bbox


def test_same_parameters_and_losses_as_flax():
  config = pytorch_bbox.get_config()
  config.image_size, config.batch_size = 32, 5
  config.network.update(channels=(4, 8, 8), features=16, hidden=12, latent=3)
  model = bbox.make_model(config)
  params = pytorch_bbox.init_params(config, model)
  torch_model = pytorch_bbox.BoxCVAE(config.network, config.image_size)
  assert pytorch_common.num_params(torch_model) == sum(
      x.size for x in jax.tree.leaves(params))
  difference = pytorch_bbox.check_same_model(config, params, torch_model,
                                           pytorch_bbox.random_arrays(config))
  assert difference < 1e-5, difference
  # A different box std is a different loss: the check can fail.
  config.network.cvae_box_std = 0.05
  assert pytorch_bbox.check_same_model(config, params, torch_model,
                                     pytorch_bbox.random_arrays(config)) > 1e-3
