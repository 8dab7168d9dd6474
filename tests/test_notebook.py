"""Every notebook in notebooks/ runs top to bottom on CPU with a tiny dataset."""

import ast
import math
from pathlib import Path

import nbclient
import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
# Notebook -> (lines its output must hold, PNGs its run writes in the workdir).
EXPECTED = {
    "mnist_label": (("Train Epoch: 0 [0/400 (0%)]", "====> Test set loss:"),
                    ("samples.png", "reconstructions.png")),
    "mnist_quadrant": (("baseline: training or resuming in", "epoch 0 [0/300]",
                        "test -log p(y|x), nats/image: {"), ("completions.png",)),
    "segmentation": (("epoch 0 [0/64]", "epoch 0 validation loss", "test: {"),
                     ("panel.png",)),
    "prob_unet": (("epoch 0 [0/32]", "epoch 0 validation loss", "test: {"),
                  ("panel.png",)),
    "bbox": (("epoch 0 [0/32]", "epoch 0 validation loss", "test: {"),
             ("boxes.png",)),
    "your_own_cvae": (("the model keeps the CVAE interface", "epoch 0 step 0:",
                       "resumed from checkpoint of step 40", '"changed"',
                       "exact -log p(y|x):", "estimates: {'prior_mean'"), ()),
}
# The figures a results dict printed by the notebook must hold (finite).
FIGURES = {
    "mnist_quadrant": {"prior_mean", "prior_monte_carlo", "importance_sampled",
                       "importance_sampled_large", "negative_elbo"},
    "segmentation": {"pixel_error", "iou", "best_of_4_iou", "nll_prior_mean",
                     "nll_prior_monte_carlo", "nll_importance_sampled"},
    "prob_unet": {"ged_8", "ideal_ged_8", "floor_ged_8", "hungarian_iou", "nll"},
    "bbox": {"best_of_4_iou", "nll_importance_sampled"},
}


def test_every_notebook_is_tested():
  assert set(NOTEBOOKS) == set(EXPECTED), "add the new notebook to EXPECTED"


def _printed_dict(outputs: str, prefix: str) -> dict:
  line = next(l for l in outputs.splitlines() if l.startswith(prefix))
  return ast.literal_eval(line[len(prefix):].strip())


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name, tiny_mnist_dir, tmp_path, monkeypatch):
  notebook = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
  monkeypatch.setenv("CVAE_JAX_NOTEBOOK_TINY_DATA", str(tiny_mnist_dir))
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  # The notebook writes workdirs/ under its working directory: a scratch copy.
  (tmp_path / "train").symlink_to(REPO / "train")
  (tmp_path / "cvae_jax").symlink_to(REPO / "cvae_jax")
  client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute()
  outputs = "".join(o.get("text", "") for cell in notebook.cells
                    for o in cell.get("outputs", []))
  lines, pngs = EXPECTED[name]
  assert "local device(s)" in outputs
  for line in lines:
    assert line in outputs, line
  if name in FIGURES:
    prefix = ("test -log p(y|x), nats/image:" if name == "mnist_quadrant"
              else "test:")
    figures = _printed_dict(outputs, prefix)
    assert FIGURES[name] <= set(figures), sorted(figures)
    assert all(math.isfinite(v) for v in figures.values()), figures
  images = [o for cell in notebook.cells for o in cell.get("outputs", [])
            if "image/png" in o.get("data", {})]
  # The loss curve and each PNG of the run (Prob U-Net: and GED vs S).
  assert len(images) >= 1 + len(pngs) + (name == "prob_unet")
  for png in pngs:
    assert (tmp_path / "workdirs" / f"notebook_{name}" / png).exists(), png
