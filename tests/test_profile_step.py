"""benchmarks.profile_step sorts a step's convolutions by direction."""

import jax
import jax.numpy as jnp

from benchmarks import profile_step


def _conv(x, w, stride=1):
  return jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _records():
  """The conv records of a c -> c conv (its input gradient has the forward's
  shapes) after a strided one."""
  def loss(params, x):
    return jnp.sum(_conv(jax.nn.relu(_conv(x, params[0], 2)), params[1]) ** 2)
  params = (jnp.ones((3, 3, 2, 4)), jnp.ones((3, 3, 4, 4)))
  x = jnp.ones((2, 8, 8, 2))
  return profile_step.conv_records(
      jax.make_jaxpr(loss)(params, x).jaxpr,
      jax.make_jaxpr(jax.value_and_grad(loss))(params, x).jaxpr)


def test_forward_input_and_weight_gradients_are_told_apart():
  records = _records()
  directions = sorted(r["direction"] for r in records for _ in range(r["count"]))
  # 2 forward, 2 weight gradients, 1 input gradient (x itself needs none).
  assert directions == ["forward"] * 2 + ["input gradient"] + ["weight gradient"] * 2
  timed = profile_step.time_convolution(records[0], "eigen", repeats=1, calls=1)
  assert timed["seconds"] > 0 and timed["flops"] > 0


def test_every_gradient_convolution_is_matched_to_its_forward():
  records = _records()
  forwards = [r for r in records if r["direction"] == "forward"]
  for record in records:
    forward = profile_step._forward_of(record, forwards)  # pylint: disable=protected-access
    kernel = forward["inputs"][1]
    if record["direction"] == "weight gradient":
      assert record["output"] == kernel
    elif record["direction"] == "input gradient":  # The second conv's.
      assert kernel == (3, 3, 4, 4) and record["output"] == (2, 4, 4, 4)
  # The strided conv's weight gradient goes to the strided forward.
  strided = [r for r in records if r["direction"] == "weight gradient"
             and r["output"] == (3, 3, 2, 4)]
  assert profile_step._forward_of(strided[0], forwards)["output"] == (2, 4, 4, 4)  # pylint: disable=protected-access
