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


EXAMPLE_PAGES = ("mnist_label", "mnist_quadrant", "segmentation", "prob_unet", "bbox",
                 "toy_mixture", "speed")
# Words about how the project is made, not what it is: issues, sessions,
# commit hashes, earlier versions.
NOT_ABOUT_THE_PROJECT = re.compile(
    r"\bissue \d|#\d{2}\b|\bsessions?\b|\bprevious version|\bcommit [0-9a-f]{7}"
    r"|\b[0-9a-f]{7,40}\b(?<![0-9]{7})", re.I)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_page_describes_the_project_as_it_is(page):
  text = re.sub(r"\(https?://[^)]*\)", "", page.read_text())  # URLs may hold hashes.
  assert not NOT_ABOUT_THE_PROJECT.findall(text)


@pytest.mark.parametrize("name", EXAMPLE_PAGES)
def test_example_pages_stay_short(name):
  assert len((ROOT / "docs" / f"{name}.md").read_text().split()) <= 1500
