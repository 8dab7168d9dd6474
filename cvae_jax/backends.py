"""Which XLA:CPU library runs the convolutions of a compiled train step.

XLA:CPU hands convolutions to one of two libraries: YNNPACK (XLA's default
in this jaxlib) or its older Eigen path. Measured on a 2-core x86 CPU
(docs/speed.md): at 128 x 128 images (the Prob U-Net on LIDC, Sohn et al.'s
CNN on CUB) YNNPACK's weight-gradient convolution is 4-6x slower than
Eigen's and the train step 1.4-1.6x slower; at 32 x 32 (the offline Prob
U-Net) and 64 x 64 with a strided first conv (the box CVAE) YNNPACK is
ahead (1.2-1.3x). `config.cpu_convolutions` chooses, per run:

  "auto"     (default) Eigen when config.image_size >= AUTO_EIGEN_FROM_SIZE,
             else YNNPACK;
  "ynnpack"  XLA's default;
  "eigen"    YNNPACK for dots only, convolutions on Eigen.

The choice is a compiler option of the jitted train step
(`jax.jit(..., compiler_options=...)`), so it needs no environment variable
and may differ between two models in one process. It changes floats in the
last bits, not the mathematics (tests check the two give the same training to
1e-5). Off CPU it does nothing. A user's own XLA_FLAGS setting of
--xla_cpu_experimental_ynn_fusion_type wins over the config (the library
then passes nothing).
"""

import os

import jax

from cvae_jax.errors import ConfigError

CHOICES = ("auto", "ynnpack", "eigen")
AUTO_EIGEN_FROM_SIZE = 128  # Images this wide train faster on Eigen.
_FLAG = "xla_cpu_experimental_ynn_fusion_type"
_EIGEN_CONVOLUTIONS = {_FLAG: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def convolution_library(config) -> str:
  """"ynnpack" or "eigen": what config.cpu_convolutions asks for."""
  choice = config.get("cpu_convolutions", "auto")
  if choice not in CHOICES:
    raise ConfigError(f"cpu_convolutions must be one of {', '.join(CHOICES)}, got "
                      f"{choice!r}; set --config.cpu_convolutions")
  if choice == "auto":
    size = config.get("image_size") or 0
    return "eigen" if size >= AUTO_EIGEN_FROM_SIZE else "ynnpack"
  return choice


def compiler_options(config) -> dict | None:
  """The train step's XLA compiler options for `config`, or None (XLA's
  defaults: off CPU, for YNNPACK, or when XLA_FLAGS already decides)."""
  library = convolution_library(config)  # Validates even off CPU.
  if (jax.default_backend() != "cpu" or library == "ynnpack"
      or _FLAG in os.environ.get("XLA_FLAGS", "")):
    return None
  return dict(_EIGEN_CONVOLUTIONS)
