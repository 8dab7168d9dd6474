"""One forward per step: the objectives on `CVAE.forward` equal the old
three-apply formulation (kept here as the reference), and a step runs each
convolution of a network the minimum number of times."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvae_jax import distributions, estimators, objectives
from cvae_jax.models import LabelCVAE, QuadrantCVAE
from cvae_jax.models import bbox as bbox_models
from cvae_jax.models import prob_unet as prob_unet_models
from cvae_jax.tasks import bbox as bbox_task
from cvae_jax.tasks import segmentation as seg_task
from helpers import segmentation_arrays, tiny_segmentation_config
from train.configs import bbox as bbox_config


# ------------------------------------------------ the old formulation (reference)
# Each net through its own `model.apply` on the raw condition, as the library
# computed the objectives before the one-pass forward.

def _old_target_log_likelihood(model, params, batch, z):
  output = model.apply(params, z, batch["condition"], method="generation")
  return distributions.log_likelihood(output, batch["target"],
                                      batch.get("target_mask"),
                                      event_ndim=batch["target"].ndim - 1)


def _old_negative_elbo(model, params, batch, rng):
  posterior = model.apply(params, batch["target"], batch["condition"],
                          method="recognition")
  prior = model.apply(params, batch["condition"], method="prior")
  z = distributions.sample_gaussian(rng, posterior)
  return (-_old_target_log_likelihood(model, params, batch, z)
          + distributions.kl_diagonal_gaussians(posterior, prior))


def _old_gsnn(model, params, batch, rng, num_samples):
  prior = model.apply(params, batch["condition"], method="prior")
  if num_samples == 1:
    z = distributions.sample_gaussian(rng, prior)
    return -_old_target_log_likelihood(model, params, batch, z)
  return -estimators.importance_sampled_log_likelihood(
      lambda z: _old_target_log_likelihood(model, params, batch, z), prior, prior,
      rng, num_samples, chunk_size=num_samples,
      rows_per_slice=num_samples * len(batch["target"]))


def _old_objective(kind, model, alpha=0.5, gsnn_samples=1, joint_baseline=False):
  def objective(params, batch, rng):
    if kind == "cvae":
      loss = _old_negative_elbo(model, params, batch, rng)
    elif kind == "gsnn":
      loss = _old_gsnn(model, params, batch, rng, gsnn_samples)
    else:
      loss = (alpha * _old_negative_elbo(model, params, batch, rng)
              + (1 - alpha) * _old_gsnn(model, params, batch, rng, gsnn_samples))
    if joint_baseline:  # The baseline module applied on its own parameters.
      baseline = model.apply(params, batch["condition"],
                             method=lambda m, x: m.baseline(x))
      loss = loss - distributions.log_likelihood(
          baseline, batch["target"], batch.get("target_mask"))
    return loss
  return objective


# ------------------------------------------------------------------- cases

def _label_case():
  model = LabelCVAE(hidden_size=16, latent_size=3)
  rng = np.random.default_rng(0)
  batch = {"target": jnp.asarray(rng.random((5, 784)), jnp.float32),
           "condition": jnp.asarray(rng.integers(0, 10, 5), jnp.int32)}
  return model, batch


def _quadrant_case(**fields):
  model = QuadrantCVAE(hidden_sizes=(16, 8), latent_size=4, **fields)
  rng = np.random.default_rng(1)
  images = rng.random((5, 784)).astype(np.float32)
  hidden = np.zeros((5, 784), bool)
  hidden[:, :392] = True
  batch = {"condition": jnp.asarray(np.where(hidden, -1.0, images)),
           "target": jnp.asarray(images),
           "target_mask": jnp.asarray(hidden, jnp.float32)}
  return model, batch


def _segmentation_case(multiscale_levels=1):
  config = tiny_segmentation_config(multiscale_levels=multiscale_levels)
  model = seg_task.make_model(config)
  rng = np.random.default_rng(2)
  images = jnp.asarray(rng.random((4, 16, 16, 1)), jnp.float32)
  masks = jnp.asarray(rng.random((4, 16, 16)) > 0.6, jnp.float32)
  return model, seg_task.objective_batch(config, images, masks, training=True)


def _prob_unet_case():
  model = prob_unet_models.ProbabilisticUNet((4, 8), latent_size=3,
                                             convs_per_block=1, fcomb_convs=2)
  rng = np.random.default_rng(3)
  batch = {"condition": jnp.asarray(rng.random((3, 8, 8, 1)), jnp.float32),
           "target": jnp.asarray(rng.random((3, 64)) > 0.5, jnp.float32)}
  return model, batch


def _box_config():
  config = bbox_config.get_config()
  config.image_size = 32
  config.network.update(dict(channels=(4, 6), kernels=(3, 3), pools=(2, 2),
                             features=16, hidden=16))
  return config


def _box_case():
  config = _box_config()
  model = bbox_models.BoxCVAE(**{k: v for k, v in config.network.to_dict().items()
                                 if k in ("channels", "kernels", "pools",
                                          "first_stride", "features", "hidden")},
                              latent=2)
  rng = np.random.default_rng(4)
  batch = {"condition": {"image": jnp.asarray(rng.random((4, 32, 32, 1)), jnp.float32),
                         "class": jnp.zeros((4,), jnp.int32)},
           "target": jnp.asarray(rng.random((4, 4)), jnp.float32)}
  return model, batch


def _init(model, batch):
  params = model.init(jax.random.PRNGKey(0), batch["target"], batch["condition"])
  # Zero-initialised heads (the Prob U-Net's) give q = p; move every weight a
  # little so that no term is trivially zero.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  return jax.tree.unflatten(tree, [
      v + 0.05 * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys)])


CASES = {
    "label cvae": (_label_case, dict(kind="cvae")),
    "quadrant cvae, joint baseline": (_quadrant_case, dict(
        kind="cvae", joint_baseline=True)),
    "quadrant gsnn S=1": (_quadrant_case, dict(kind="gsnn")),
    "quadrant gsnn S=3": (_quadrant_case, dict(kind="gsnn", gsnn_samples=3)),
    "quadrant hybrid S=2, guess to generation": (
        lambda: _quadrant_case(generation_sees_condition=True,
                               baseline_to_generation=True),
        dict(kind="hybrid", alpha=0.3, gsnn_samples=2, joint_baseline=True)),
    "segmentation cvae, joint baseline": (_segmentation_case, dict(
        kind="cvae", joint_baseline=True)),
    "segmentation hybrid": (_segmentation_case, dict(
        kind="hybrid", alpha=0.5, gsnn_samples=1, joint_baseline=True)),
    "segmentation gsnn S=2": (lambda: _segmentation_case(0), dict(
        kind="gsnn", gsnn_samples=2, joint_baseline=True)),
    "prob unet cvae": (_prob_unet_case, dict(kind="cvae")),
    "box cvae": (_box_case, dict(kind="cvae")),
    "box hybrid": (_box_case, dict(kind="hybrid", alpha=0.5)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_one_pass_gradients_equal_the_three_apply_formulation(name):
  make_case, settings = CASES[name]
  model, batch = make_case()
  params = _init(model, batch)
  rng = jax.random.PRNGKey(7)
  kind = settings["kind"]
  rest = {k: v for k, v in settings.items() if k != "kind"}
  new = objectives.per_example_objective(kind, model, **rest)
  old = _old_objective(kind, model, **rest)
  total = lambda fn: lambda p: jnp.sum(fn(p, batch, rng))
  new_loss, new_grads = jax.jit(jax.value_and_grad(total(new)))(params)
  old_loss, old_grads = jax.jit(jax.value_and_grad(total(old)))(params)
  np.testing.assert_allclose(new_loss, old_loss, rtol=1e-5)
  for path, a, b in zip(jax.tree_util.tree_leaves_with_path(new_grads),
                        jax.tree.leaves(new_grads), jax.tree.leaves(old_grads)):
    scale = max(float(jnp.max(jnp.abs(b))), 1.0)
    np.testing.assert_allclose(a / scale, b / scale, atol=1e-5, err_msg=str(path[0]))
  assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(new_grads))


# ------------------------------------------------------------ convolutions

def _count_convolutions(jaxpr) -> int:
  """conv_general_dilated equations in a closed jaxpr, sub-jaxprs included."""
  count = 0
  for eqn in jaxpr.eqns:
    count += eqn.primitive.name == "conv_general_dilated"
    for value in eqn.params.values():
      for sub in (value if isinstance(value, (tuple, list)) else (value,)):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          count += _count_convolutions(inner)
  return count


def _conv_layers(params) -> int:
  """How many conv kernels (4-D weights) the parameters hold."""
  return sum(leaf.ndim == 4 for leaf in jax.tree.leaves(params))


def _step_convolutions(loss_fn, params, arrays) -> tuple[int, int]:
  """(convs in the loss, convs in its value and gradient)."""
  rng = jax.random.PRNGKey(0)
  forward = jax.make_jaxpr(lambda p: loss_fn(p, arrays, rng)[0])(params)
  step = jax.make_jaxpr(jax.grad(lambda p: loss_fn(p, arrays, rng)[0]))(params)
  return _count_convolutions(forward.jaxpr), _count_convolutions(step.jaxpr)


@pytest.mark.parametrize("kind", ["cvae", "hybrid"])
def test_a_segmentation_step_runs_each_convolution_the_minimum_number_of_times(kind):
  config = tiny_segmentation_config(multiscale_levels=1, model=kind)
  model = seg_task.make_model(config)
  arrays = {k: jnp.asarray(v) for k, v in segmentation_arrays(4).items()}
  batch = seg_task.objective_batch(config, arrays["image"], arrays["masks"][:, 0], True)
  params = model.init(jax.random.PRNGKey(0), batch["target"], batch["condition"])
  layers = _conv_layers(params)
  forward, step = _step_convolutions(seg_task.TASK.loss_fn(config, model), params,
                                     arrays)
  # Forward: each conv layer once (the decoder runs once over the posterior's
  # and the prior's z together). Gradient: the forward, one weight gradient
  # per layer, and an input gradient for every layer but the three that see
  # only data (the first convs of the baseline, prior and recognition
  # encoders; the prior's guess is under stop_gradient).
  assert forward == layers
  assert step == 3 * layers - 3
  # The three-apply formulation ran the baseline four times (seven in the
  # hybrid) and the prior encoder twice (four).
  old = _old_objective(kind, model, config.hybrid_alpha, config.gsnn_samples,
                       joint_baseline=True)
  old_forward = _count_convolutions(jax.make_jaxpr(
      lambda p: jnp.sum(old(p, batch, jax.random.PRNGKey(0))))(params).jaxpr)
  assert old_forward > forward


@pytest.mark.parametrize("kind", ["cvae", "hybrid"])
def test_a_box_step_runs_the_shared_encoder_once(kind):
  config = _box_config()
  config.model = kind
  model = bbox_task.make_model(config)
  rng = np.random.default_rng(0)
  arrays = {"image": jnp.asarray(rng.random((4, 32, 32, 1)), jnp.float32),
            "boxes": jnp.asarray(rng.random((4, 3, 4)), jnp.float32),
            "labels": jnp.asarray([[1, 2, -1]] * 4, jnp.int32),
            "query": jnp.zeros((4,), jnp.int32)}
  batch, _ = bbox_task.objective_batch(config, arrays, None)
  params = model.init(jax.random.PRNGKey(0), batch["target"], batch["condition"])
  layers = _conv_layers(params)
  forward, step = _step_convolutions(bbox_task.TASK.loss_fn(config, model), params,
                                     arrays)
  # The encoder's convs once forward, once more each for the weight
  # gradient, and an input gradient for all but the first (it sees the image).
  assert layers == len(config.network.channels)
  assert (forward, step) == (layers, 3 * layers - 1)
