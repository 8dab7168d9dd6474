"""Flax modules only: pure `init`/`apply`, no training logic.

Every CVAE module exposes three methods, which the objectives and estimators
call through `module.apply(params, ..., method=...)`:

* `recognition(target, condition) -> DiagonalGaussian`  q(z | x, y)
* `prior(condition) -> DiagonalGaussian`                p(z | x)
* `generation(z, condition) -> logits`                  p(y | x, z)
  (or a `DiagonalGaussian` over y, e.g. box coordinates; see
  `distributions.log_likelihood`)

`condition` is x and `target` is y in the notation of Sohn et al. (2015).
"""

from cvae_jax.models.label_cvae import LabelCVAE
from cvae_jax.models.quadrant import BaselineNet, QuadrantCVAE
from cvae_jax.models.segmentation import BaselineCNN, SegmentationCVAE

MODELS = {"label_cvae": LabelCVAE}
