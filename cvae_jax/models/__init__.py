"""Flax modules only: pure `init`/`apply`, no training logic.

Every CVAE subclasses `cvae_jax.models.cvae.CVAE` (see its docstring): nets
on condition features (`encode` once, then `prior_from_features`,
`recognition_from_features`, `generation_from_features`), one `forward` that
runs each net once for the objectives, and `prior(condition)`,
`recognition(target, condition)`, `generation(z, condition)` conveniences.
Generation and baseline nets return a likelihood (`distributions.Bernoulli`,
`DiagonalGaussian`, `GaussianMixture`) with a `log_prob`.

`condition` is x and `target` is y in the notation of Sohn et al. (2015).
"""

from cvae_jax.models.cvae import CVAE, CVAEOutputs, forward
from cvae_jax.models.label_cvae import LabelCVAE
from cvae_jax.models.quadrant import BaselineNet, QuadrantCVAE
from cvae_jax.models.segmentation import BaselineCNN, SegmentationCVAE

__all__ = ["CVAE", "CVAEOutputs", "forward", "LabelCVAE", "BaselineNet", "QuadrantCVAE",
           "BaselineCNN", "SegmentationCVAE", "MODELS", "import_model",
           # The submodules.
           "ambiguous_segmentation", "bbox", "cvae", "hierarchical", "hpu_net",
           "label_cvae", "layers", "phiseg", "pooling", "prob_unet", "quadrant",
           "segmentation", "ssn", "toy_mixture"]

MODELS = {"label_cvae": LabelCVAE}


def import_model(spec: str):
  """The object "package.module:name" names (a model factory, config ->
  flax module); ConfigError in one line when it cannot be imported."""
  import importlib  # pylint: disable=g-import-not-at-top
  from cvae_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  module_name, _, name = spec.partition(":")
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise ConfigError(f"model {spec!r}: cannot import {module_name!r} ({e}); "
                      "set --config.model to a built-in name or "
                      "package.module:factory on the Python path") from None
  if not callable(getattr(module, name, None)):
    raise ConfigError(f"model {spec!r}: {module_name} has no callable {name!r}; "
                      "set --config.model=package.module:factory")
  return getattr(module, name)
