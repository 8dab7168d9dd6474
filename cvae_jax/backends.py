"""Which XLA:CPU library runs the convolutions of a compiled train step.

XLA:CPU hands convolutions to one of two libraries: YNNPACK (XLA's default
in this jaxlib) or its older Eigen path. Measured on a 2-core x86 CPU
(docs/speed.md, train steps of both compiled in one process and timed in
turns): with every sub-network computed once per step, Eigen's train step is
the faster for the Prob U-Net and Sohn et al.'s CNN at every size, by 5-12%
at 32 x 32 and 1.4-1.6x at 128 x 128 (where YNNPACK's weight-gradient
convolutions are 4-6x slower); the box CVAE (64 x 64, strided first conv)
is within 5% either way, so its config keeps YNNPACK. `config.cpu_convolutions`
chooses, per run:

  "auto"     (default) Eigen for image models (the config has an
             image_size), else XLA's default (the MLP models have no
             convolutions);
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

__all__ = ["CHOICES", "convolution_library", "library_options",
           "compiler_options"]

CHOICES = ("auto", "ynnpack", "eigen")
_FLAG = "xla_cpu_experimental_ynn_fusion_type"
_EIGEN_CONVOLUTIONS = {_FLAG: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def convolution_library(config) -> str:
  """"ynnpack" or "eigen": what config.cpu_convolutions asks for."""
  choice = config.get("cpu_convolutions", "auto")
  if choice not in CHOICES:
    raise ConfigError(f"cpu_convolutions must be one of {', '.join(CHOICES)}, got "
                      f"{choice!r}; set --config.cpu_convolutions")
  if choice == "auto":
    return "eigen" if config.get("image_size") else "ynnpack"
  return choice


def library_options(library: str) -> dict:
  """The compiler options that put convolutions on `library` ({} for
  "ynnpack", XLA's default), whatever the backend and XLA_FLAGS."""
  return dict(_EIGEN_CONVOLUTIONS) if library == "eigen" else {}


def compiler_options(config) -> dict | None:
  """The train step's XLA compiler options for `config`, or None (XLA's
  defaults: off CPU, for YNNPACK, or when XLA_FLAGS already decides)."""
  library = convolution_library(config)  # Validates even off CPU.
  if (jax.default_backend() != "cpu" or library == "ynnpack"
      or _FLAG in os.environ.get("XLA_FLAGS", "")):
    return None
  return library_options(library)
