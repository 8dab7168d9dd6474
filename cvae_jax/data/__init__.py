"""TFDS input pipelines."""
