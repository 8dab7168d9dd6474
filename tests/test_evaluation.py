"""map_over_batches: every example once, in order; a progress bar only on a
terminal; map_dict_over_batches: named results of any shape."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvae_jax import evaluation


@pytest.mark.parametrize("terminal", [True, False])
def test_map_over_batches_shows_a_bar_on_a_terminal_only(monkeypatch, capsys,
                                                         terminal):
  from cvae_jax import evaluation  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal)
  arrays = {"x": np.arange(10, dtype=np.float32)}
  doubled = evaluation.map_over_batches(
      lambda params, batch, rng: batch["x"] * params, np.float32(2.0), arrays,
      jax.random.PRNGKey(0), batch_size=4, description="doubling")
  np.testing.assert_array_equal(doubled, 2 * arrays["x"])  # 3 batches, padded.
  err = capsys.readouterr().err
  if terminal:
    assert "doubling:" in err and "/10 [" in err
  else:
    assert err == ""


def test_map_dict_over_batches_keeps_names_shapes_and_order():
  arrays = {"x": np.arange(10, dtype=np.float32)}

  def fn(params, batch, rng):
    del rng
    x = batch["x"]
    return {"square": x**2 * params, "pair": jnp.stack([x, -x], -1),
            "flag": x > 4}
  result = evaluation.map_dict_over_batches(fn, np.float32(2.0), arrays, jax.random.PRNGKey(0), 4)
  np.testing.assert_allclose(result["square"], 2 * np.arange(10) ** 2)
  np.testing.assert_allclose(result["pair"], np.stack([np.arange(10), -np.arange(10)], -1))
  np.testing.assert_array_equal(result["flag"], np.arange(10) > 4)


def test_validation_loss_evaluator_is_the_mean_with_the_same_draws_every_epoch():
  arrays = {"x": np.arange(7, dtype=np.float32)}

  def fn(params, batch, rng):  # A noisy per-example loss.
    return batch["x"] * params + jax.random.normal(rng, batch["x"].shape)
  evaluate = evaluation.validation_loss_evaluator(fn, arrays, jax.random.PRNGKey(5), 4)
  state = type("State", (), {"params": np.float32(3.0)})()
  first, later = evaluate(state, 0), evaluate(state, 7)
  assert first == later  # The epoch does not change the draws.
  expected = np.mean(evaluation.map_over_batches(fn, state.params, arrays,
                                                 jax.random.PRNGKey(5), 4))
  np.testing.assert_allclose(first["validation_loss"], expected, rtol=1e-6)
  assert abs(first["validation_loss"] - 9.0) < 3.0  # mean(3x) = 9, plus noise.
