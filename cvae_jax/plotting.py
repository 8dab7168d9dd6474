"""Image grids as PNG files. matplotlib is imported on first use (0.4 s that
a config check does not need)."""

from pathlib import Path

import numpy as np

__all__ = ["read_scalars", "plot_scalars", "tile_images", "save_image_grid",
           "save_box_panel", "save_bar_chart", "save_curves", "curves_figure",
           "save_toy_mixture_samples"]


def read_scalars(workdir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Every scalar the trainer wrote to TensorBoard in `workdir`.

  Returns:
    tag (e.g. "train/loss") -> (steps [n], values [n]), sorted by step.
  """
  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util
  accumulator = event_accumulator.EventAccumulator(
      str(workdir), size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  scalars = {}
  for tag in accumulator.Tags()["tensors"]:
    events = sorted(accumulator.Tensors(tag), key=lambda e: e.step)
    scalars[tag] = (
        np.array([e.step for e in events]),
        np.array([float(tensor_util.make_ndarray(e.tensor_proto)) for e in events]))
  return scalars


def plot_scalars(workdir: str | Path, tags: tuple[str, ...]):
  """A matplotlib figure of the given TensorBoard scalars against the step."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  scalars = read_scalars(workdir)
  figure, axes = plt.subplots(1, len(tags), figsize=(5 * len(tags), 3.5),
                              squeeze=False)
  for ax, tag in zip(axes[0], tags):
    steps, values = scalars[tag]
    ax.plot(steps, values)
    ax.set_xlabel("step")
    ax.set_title(tag)
  figure.tight_layout()
  return figure


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


def _is_main_process() -> bool:
  from cvae_jax import sharding  # pylint: disable=g-import-not-at-top
  return sharding.is_main_process()


def save_image_grid(images: np.ndarray, path: str | Path,
                    scale: int = 2) -> np.ndarray:
  """Writes [rows, cols, H, W] grey images in [0, 1] as one PNG, each pixel
  drawn `scale` x `scale`; returns the tile (unscaled)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  grid = tile_images(np.clip(np.asarray(images, np.float32), 0.0, 1.0))
  if _is_main_process():  # Under jax.distributed: one writer.
    plt.imsave(str(path), np.kron(grid, np.ones((scale, scale), np.float32)),
               cmap="gray", vmin=0.0, vmax=1.0)
  return grid


def save_box_panel(panel: dict, path: str | Path, columns: int = 4):
  """Draws canvases with their valid boxes (green, thick) and sampled boxes
  (red, thin, translucent) as one PNG.

  Args:
    panel: "image" [N, H, W, C] in [0, 1]; "boxes" [N, M, 4] and "samples"
      [K, N, 4] as (cx, cy, w, h) / image side; "valid" [N, M] bool.
  """
  # A bare Figure (no pyplot): no GUI backend, no global state touched.
  from matplotlib import patches  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  images = np.asarray(panel["image"])
  count, size = len(images), images.shape[1]
  rows = -(-count // columns)
  figure = Figure(figsize=(2.2 * columns, 2.2 * rows))
  axes = figure.subplots(rows, columns, squeeze=False)
  for ax in axes.flat:
    ax.axis("off")

  def draw(ax, box, **style):
    cx, cy, w, h = np.asarray(box) * size
    ax.add_patch(patches.Rectangle((cx - w / 2 - 0.5, cy - h / 2 - 0.5), w, h,
                                   fill=False, **style))

  for i in range(count):
    ax = axes.flat[i]
    image = images[i]
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
              vmin=0, vmax=1)
    for box, valid in zip(panel["boxes"][i], panel["valid"][i]):
      if valid:
        draw(ax, box, edgecolor="lime", linewidth=2.0)
    for box in panel["samples"][:, i]:
      draw(ax, box, edgecolor="red", linewidth=0.8, alpha=0.5)
  figure.tight_layout()
  if _is_main_process():
    figure.savefig(str(path), dpi=80)


def save_bar_chart(categories: list[str], series: dict[str, np.ndarray],
                   path: str | Path, ylabel: str, title: str = "") -> None:
  """Grouped bars: one group per category, one bar per series (label ->
  [len(categories)] values), written as one PNG."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(1.1 * len(categories) + 2, 3.6))
  ax = figure.subplots()
  width = 0.8 / len(series)
  positions = np.arange(len(categories))
  for i, (label, values) in enumerate(series.items()):
    ax.bar(positions + (i - (len(series) - 1) / 2) * width, np.asarray(values),
           width, label=label)
  ax.set_xticks(positions, categories, rotation=20)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.legend()
  figure.tight_layout()
  if _is_main_process():
    figure.savefig(str(path), dpi=90)


def save_curves(curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
                path: str | Path, floors: dict[str, float] | None = None,
                x_label: str = "step", log_x: bool = False) -> None:
  """One panel per metric: {metric: {run label: (xs, values)}} against
  `x_label` (xs: steps by default), with a dashed line at floors[metric]
  where given; one PNG."""
  figure = curves_figure(curves, floors, x_label, log_x)
  if _is_main_process():
    figure.savefig(str(path), dpi=90)


def curves_figure(curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
                  floors: dict[str, float] | None = None, x_label: str = "step",
                  log_x: bool = False):
  """`save_curves`'s matplotlib Figure, one colour per run label."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(5 * len(curves), 3.6))
  axes = figure.subplots(1, len(curves), squeeze=False)[0]
  # A run keeps its colour in every panel, though a panel may lack some runs.
  labels = list(dict.fromkeys(label for runs in curves.values() for label in runs))
  colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
  for ax, (metric, runs) in zip(axes, curves.items()):
    for label, (steps, values) in runs.items():
      ax.plot(steps, values, marker=".", label=label, color=colours[label])
    if floors and metric in floors:
      ax.axhline(floors[metric], color="k", linestyle="--", label="floor / ideal")
    ax.set_xlabel(x_label)
    if log_x:
      ax.set_xscale("log")
    ax.set_title(metric)
    ax.legend(fontsize="small")
  figure.tight_layout()
  return figure


def save_toy_mixture_samples(samples: np.ndarray, conditions, path: str | Path,
                             data_seed: int = 0) -> None:
  """One panel per condition x of `cvae_jax.data.toy_mixture`: the model's
  samples [len(conditions) columns of samples[:, i], S, 2] over the data near
  x (|x' - x| < 0.02) and the true modes."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  from cvae_jax.data import toy_mixture  # pylint: disable=g-import-not-at-top
  if not _is_main_process():
    return
  truth = toy_mixture.sample(np.random.default_rng(data_seed), 20_000)
  fig = Figure(figsize=(12, 4))
  axes = fig.subplots(1, len(conditions))
  for i, (ax, value) in enumerate(zip(axes, conditions)):
    near = np.abs(truth["x"][:, 0] - value) < 0.02
    ax.scatter(*truth["y"][near].T, s=3, c="grey", alpha=0.4, label="data near x")
    ax.scatter(*samples[:, i].T, s=3, c="tab:blue", alpha=0.5, label="model")
    means = toy_mixture.mode_means(np.array([value]))[0]
    k = int(toy_mixture.num_modes(np.array([value]))[0])
    ax.scatter(*means[:k].T, marker="x", c="red", s=60, label="true modes")
    ax.set(title=f"x = {value}: {k} modes", xlim=(-2, 2), ylim=(-2, 2),
           aspect="equal")
  axes[0].legend(loc="lower left", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
