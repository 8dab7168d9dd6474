"""Image grids as PNG files."""

from pathlib import Path

import matplotlib
matplotlib.use("Agg")  # Files only; notebooks show the returned array.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def tile_images(images: np.ndarray, padding: int = 2) -> np.ndarray:
  """[rows, cols, H, W] images in [0, 1] -> one [rows*(H+p)+p, cols*(W+p)+p] array."""
  rows, cols, height, width = images.shape
  grid = np.ones((rows * (height + padding) + padding,
                  cols * (width + padding) + padding), np.float32)
  for r in range(rows):
    for c in range(cols):
      top, left = padding + r * (height + padding), padding + c * (width + padding)
      grid[top:top + height, left:left + width] = images[r, c]
  return grid


def save_image_grid(images: np.ndarray, path: str | Path) -> np.ndarray:
  """Writes [rows, cols, H, W] grey images in [0, 1] as one PNG; returns the tile."""
  grid = tile_images(np.clip(np.asarray(images, np.float32), 0.0, 1.0))
  plt.imsave(str(path), grid, cmap="gray", vmin=0.0, vmax=1.0)
  return grid
