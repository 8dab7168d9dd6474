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

MODELS = {"label_cvae": LabelCVAE}
