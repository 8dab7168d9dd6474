import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from cvae_jax import distributions, estimators, objectives
from cvae_jax.models import LabelCVAE

MODEL = LabelCVAE(hidden_size=32, latent_size=3)


def _batch(n=6, seed=0):
  rng = np.random.default_rng(seed)
  return {"target": jnp.asarray(rng.random((n, 784)), jnp.float32),
          "condition": jnp.asarray(rng.integers(0, 10, n), jnp.int32)}


def _params():
  batch = _batch()
  return MODEL.init(jax.random.PRNGKey(0), batch["target"], batch["condition"])


class NegativeElboTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_terms_shapes_and_sum(self):
    fn = self.variant(functools.partial(objectives.negative_elbo, MODEL))
    terms = fn(_params(), _batch(), jax.random.PRNGKey(1))
    chex.assert_shape([terms.loss, terms.reconstruction, terms.kl], (6,))
    np.testing.assert_allclose(terms.loss, terms.reconstruction + terms.kl, rtol=1e-6)
    assert np.all(np.asarray(terms.kl) >= 0)

  def test_jit_equals_no_jit(self):
    args = (_params(), _batch(), jax.random.PRNGKey(1))
    fn = functools.partial(objectives.summed_negative_elbo_loss, MODEL)
    chex.assert_trees_all_close(fn(*args), jax.jit(fn)(*args), rtol=1e-5)

  def test_matches_the_reference_formula(self):
    params, batch, rng = _params(), _batch(), jax.random.PRNGKey(2)
    loss, terms = objectives.summed_negative_elbo_loss(MODEL, params, batch, rng)
    # The reference: BCE(sigmoid(decode(z, c)), x, sum) + -0.5 sum(1 + lv - mu^2 - e^lv).
    q = MODEL.apply(params, batch["target"], batch["condition"], method="recognition")
    z = distributions.sample_gaussian(rng, q)
    p = MODEL.apply(params, z, batch["condition"], method="generation").probabilities
    x = batch["target"]
    bce = -jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log(1 - p))
    kld = -0.5 * jnp.sum(1 + q.log_variance - q.mean**2 - jnp.exp(q.log_variance))
    np.testing.assert_allclose(terms["reconstruction"], bce, rtol=1e-4)
    np.testing.assert_allclose(terms["kl"], kld, rtol=1e-5)
    np.testing.assert_allclose(loss, bce + kld, rtol=1e-4)

  def test_importance_sampled_nll_below_negative_elbo_on_a_cvae(self):
    params, batch = _params(), _batch()
    neg_elbo = jnp.mean(jax.vmap(
        lambda rng: objectives.negative_elbo(MODEL, params, batch, rng).loss)(
            jax.random.split(jax.random.PRNGKey(3), 500)), axis=0)
    nll = -estimators.cvae_log_likelihood(MODEL, params, batch,
                                          jax.random.PRNGKey(4), 200)
    prior_nll = -estimators.cvae_log_likelihood(
        MODEL, params, batch, jax.random.PRNGKey(5), 200, proposal="prior")
    chex.assert_shape([nll, prior_nll], (6,))
    assert np.all(np.asarray(nll) < np.asarray(neg_elbo))
    assert np.all(np.isfinite(prior_nll))
