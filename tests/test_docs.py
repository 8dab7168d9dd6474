"""The README is a front page and its links, and the docs pages', resolve."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
  missing = []
  for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
    if target.startswith(("http://", "https://", "#", "mailto:")):
      continue
    if not (page.parent / target.split("#")[0]).exists():
      missing.append(target)
  assert not missing, missing


def test_readme_is_a_front_page():
  text = (ROOT / "README.md").read_text()
  assert text.count("\n") <= 250
  for example in ("mnist_label", "mnist_quadrant", "segmentation", "prob_unet", "bbox"):
    assert f"(docs/{example}.md)" in text, example
