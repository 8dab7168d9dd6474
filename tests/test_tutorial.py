"""docs/your_own_cvae.md runs as printed: its ```python blocks, in order, in
one fresh namespace (```bash blocks are commands, not run)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "your_own_cvae.md"


def python_blocks(text: str) -> list[str]:
  return re.findall(r"^```python\n(.*?)^```$", text, re.M | re.S)


def test_the_tutorial_runs_as_printed(tmp_path, monkeypatch, capsys):
  blocks = python_blocks(PAGE.read_text())
  assert len(blocks) >= 8, len(blocks)
  monkeypatch.chdir(tmp_path)  # Its workdir is relative to where it runs.
  namespace = {"__name__": "your_own_cvae"}
  for i, block in enumerate(blocks):
    exec(compile(block, f"{PAGE.name}, python block {i + 1}", "exec"), namespace)  # pylint: disable=exec-used
  out = capsys.readouterr().out
  # Trained, resumed (the history records the added epochs), evaluated.
  assert "epoch 15" in out and "num_epochs" in out, out[-2000:]
  assert (tmp_path / "workdirs/your_own_cvae/run_history.json").exists()
  figures = namespace["figures"]
  assert set(figures) >= {"ged_1", "ged_16", "hungarian_iou"}
