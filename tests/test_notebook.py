"""notebooks/mnist_label.ipynb runs top to bottom on CPU with a tiny dataset."""

from pathlib import Path

import nbclient
import nbformat

REPO = Path(__file__).resolve().parents[1]


def test_notebook_executes(tiny_mnist_dir, tmp_path, monkeypatch):
  notebook = nbformat.read(REPO / "notebooks" / "mnist_label.ipynb", as_version=4)
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
  assert "local device(s)" in outputs
  assert "Train Epoch: 0 [0/400 (0%)]" in outputs
  assert "====> Test set loss:" in outputs
  images = [o for cell in notebook.cells for o in cell.get("outputs", [])
            if "image/png" in o.get("data", {})]
  assert len(images) >= 3  # The loss curve and the two grids.
  assert (tmp_path / "workdirs" / "notebook_mnist_label" / "samples.png").exists()
