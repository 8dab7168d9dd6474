"""Estimates of -log p(y | x) in nats per example, one evaluator each, for
every model built on `cvae_jax.models.cvae.CVAE` (and `exact` for a
deterministic model). Sohn et al. (2015), section 4.1:

  exact                     a deterministic model's own -log p(y | x);
  prior_mean                (a) -log p(y | x, z = E[z | x]): the likelihood of
                            the single prediction at the prior mean;
  prior_monte_carlo         (b) -log (1/S) sum_s p(y | x, z_s), z_s ~ p(z | x);
  importance_sampled        (c) the same with z_s ~ q(z | x, y), weighted by
                            p(z_s | x) / q(z_s | x, y); S = num_samples;
  importance_sampled_large  (c) with S = large_num_samples over the first
                            large_num_images test examples (0: all);
  negative_elbo             the S = elbo_samples Monte-Carlo negative ELBO.

Each `make_*` takes a `base.Context` and returns an `Evaluator`, or None
where the estimate means nothing for the model (importance sampling and the
ELBO need a trained recognition net, so a GSNN gets (a) and (b) only).
Settings are read through the context: "batch_size", "num_samples",
"chunk_size" (samples drawn at once; default all), "large_num_samples",
"large_num_images", "elbo_samples".
"""

from cvae_jax import estimators, objectives
from cvae_jax.evaluators.base import CVAE, DETERMINISTIC, Context, Evaluator, measured

__all__ = ["make_exact", "make_prior_mean", "make_prior_monte_carlo",
           "make_importance_sampled", "make_importance_sampled_large",
           "make_negative_elbo"]


def _evaluator(ctx: Context, name: str, label: str, per_example,
               num_images: int = 0) -> Evaluator:
  """An Evaluator of one figure: per_example(params, batch, rng) -> [B]."""
  figure, batch_size = ctx.figure(name), ctx.require("batch_size", name)

  def run(params, test, rng, workdir):
    del workdir
    arrays = ctx.arrays(test)
    if num_images:
      arrays = {k: v[:num_images] for k, v in arrays.items()}
    values = measured(label, ctx.noun,
                      lambda p, a, r: per_example(p, ctx.batch(a), r),
                      params, arrays, rng, batch_size)
    return {figure: values}
  return Evaluator(name, run, estimators={figure: label})


def _sampled(ctx: Context, name: str, label: str, proposal: str,
             samples_setting: str, num_images: int = 0) -> Evaluator:
  num_samples = ctx.require(samples_setting, name)
  chunk = min(ctx.get("chunk_size") or num_samples, num_samples)
  model = ctx.model

  def per_example(params, batch, rng):
    return -estimators.cvae_log_likelihood(model, params, batch, rng, num_samples,
                                           proposal, chunk)
  return _evaluator(ctx, name, f"{label}, S={num_samples}", per_example,
                    num_images)


def make_exact(ctx: Context) -> Evaluator | None:
  if ctx.kind != DETERMINISTIC:
    return None
  return _evaluator(ctx, "exact", "exact -log p(y|x)", lambda p, b, r: (
      objectives.baseline_negative_log_likelihood(ctx.model, p, b)))


def make_prior_mean(ctx: Context) -> Evaluator | None:
  if ctx.kind == DETERMINISTIC:
    return None
  return _evaluator(ctx, "prior_mean", "(a) -log p(y|x, z=E[z|x])",
                    lambda p, b, r: -estimators.log_likelihood_at_prior_mean(
                        ctx.model, p, b))


def make_prior_monte_carlo(ctx: Context) -> Evaluator | None:
  if ctx.kind == DETERMINISTIC:
    return None
  return _sampled(ctx, "prior_monte_carlo", "(b) prior Monte Carlo -log p(y|x)",
                  "prior", "num_samples")


def make_importance_sampled(ctx: Context) -> Evaluator | None:
  if ctx.kind != CVAE:
    return None
  return _sampled(ctx, "importance_sampled", "(c) importance-sampled -log p(y|x)",
                  "recognition", "num_samples")


def make_importance_sampled_large(ctx: Context) -> Evaluator | None:
  if ctx.kind != CVAE:
    return None
  return _sampled(ctx, "importance_sampled_large",
                  "(c) importance-sampled -log p(y|x)", "recognition",
                  "large_num_samples", ctx.get("large_num_images") or 0)


def make_negative_elbo(ctx: Context) -> Evaluator | None:
  if ctx.kind != CVAE:
    return None
  samples = ctx.require("elbo_samples", "negative_elbo")
  return _evaluator(ctx, "negative_elbo", f"negative ELBO, S={samples}",
                    lambda p, b, r: objectives.mean_negative_elbo(
                        ctx.model, p, b, r, samples))
