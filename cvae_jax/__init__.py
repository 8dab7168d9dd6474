"""cvae_jax: conditional variational autoencoders in JAX/Flax.

The submodules are the API (`from cvae_jax import objectives`); importing the
package itself imports none of them, so `import cvae_jax` loads neither JAX
nor TensorFlow.

- `cvae_jax.models`: flax modules only (the `CVAE` base class and the
  examples' models);
- `cvae_jax.objectives`, `cvae_jax.estimators`, `cvae_jax.distributions`,
  `cvae_jax.metrics`, `cvae_jax.sampling`: pure, jittable functions and
  likelihood objects;
- `cvae_jax.predictors` and `cvae_jax.evaluators`: one prediction interface
  for every model, and the evaluators that read it;
- `cvae_jax.training`: the generic data-parallel trainer, its hooks and
  checkpoints; `cvae_jax.schedules`, `cvae_jax.configs`, `cvae_jax.geco`;
- `cvae_jax.runner`, `cvae_jax.cli`, `cvae_jax.evaluate`, `cvae_jax.tasks`:
  the layer that turns a task and a config into a run on the command line;
- `cvae_jax.data`: the examples' TFDS pipelines.
"""

__version__ = "0.1.0"

# The public submodules (pdoc documents those listed here); `from cvae_jax
# import *` imports them all, TensorFlow included.
__all__ = ["__version__", "backends", "box_metrics", "cli", "configs", "data", "distributed",
           "distributions", "errors", "estimators", "evaluate", "evaluation", "evaluators",
           "geco", "metrics", "model_check", "models", "objectives", "plotting", "predictors",
           "runner", "sampling", "schedules", "sharding", "tasks", "training"]
