"""The PyTorch box CVAE of benchmarks/ computes the flax model's function
(skipped where torch, a benchmark-only package, is not installed)."""

import jax
import pytest

torch = pytest.importorskip("torch")

# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import fake_data, pytorch_bbox, pytorch_common
from cvae_jax.tasks import bbox


def test_same_parameters_and_losses_as_flax():
  config = pytorch_bbox.get_config()
  config.image_size, config.batch_size = 32, 5
  config.network.update(channels=(4, 8, 8), features=16, hidden=12, latent=3)
  arrays = fake_data.training_arrays(bbox, config)
  _, init_fn, _ = fake_data.step_pieces(bbox, config, arrays)
  params = pytorch_common.randomized(init_fn(jax.random.PRNGKey(0)))
  torch_model = pytorch_bbox.BoxCVAE(config.network, config.image_size)
  assert pytorch_common.num_params(torch_model) == sum(
      x.size for x in jax.tree.leaves(params))
  difference = pytorch_common.loss_difference(pytorch_bbox.PEER, config, params,
                                              torch_model, arrays)
  assert difference < 1e-5, difference
  # A different box std is a different loss: the check can fail.
  config.network.cvae_box_std = 0.05
  assert pytorch_common.loss_difference(pytorch_bbox.PEER, config, params,
                                        torch_model, arrays) > 1e-3
