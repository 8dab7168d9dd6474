"""cvae_jax: conditional variational autoencoders in JAX/Flax."""

__version__ = "0.1.0"
