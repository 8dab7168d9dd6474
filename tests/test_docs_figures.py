"""Every figure a docs page quotes is a figure of the table its script wrote.

Each page in PAGES declares its sources in an HTML comment near its top:

  <!-- figures: docs/bbox_table.json docs/bbox_table.md
       other: 0.02 (the fixed box std, a setting) -->

`figures:` names JSON files written by `benchmarks/` scripts, the Markdown
tables those scripts render from them (`docs/*_table.md`,
`docs/scaling_cpu.md`), or `tables`: the page's own tables (for a page
whose script prints its table rather than writing a JSON); a remark in
parentheses is not a source. `other:` lists
the numbers in the page that are not results (settings, a paper's or
another program's printout), each with a word on why.

The rule. A *figure* is a decimal number with at least two digits after the
point (0.709, 92.16, 2,484.30), written in the page outside fenced code
blocks, inline code spans, HTML comments and link targets; the sign is
ignored, and a number that is part of a version (0.10.2) is not one.
Numbers with fewer decimals (learning rate 1e-3, threshold 0.5, 100
samples, 1.8 min) are not checked: they are settings, counts or coarse
approximations. A figure with d decimals passes when it is

  - a numeric leaf of a named JSON file rounded to d decimals, or that leaf
    times 100 when the figure is followed by `%`, times 1000 when followed
    by `ms` (the JSON holds seconds), divided by 60 when followed by `min`;
  - a number of a row of a named Markdown table (or, with `tables`, of the
    page's own tables) with at least d decimals, rounded to d decimals;
  - listed in `other:`.

A table row of the page that is a line of a named Markdown table, verbatim,
passes as a whole; a row that starts with the same two cells as a row of a
named table but differs from it fails. Differences and ratios of two figures are not accepted
unless a named table prints them: the pages quote them rounded to fewer than
two decimals or not at all.
"""

import json
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("docs/mnist_label.md", "docs/mnist_quadrant.md", "docs/segmentation.md",
         "docs/prob_unet.md", "docs/hierarchical.md", "docs/bbox.md", "docs/toy_mixture.md",
         "docs/speed.md",
         "docs/multi_host.md", "docs/mixed_precision.md")

_SOURCES = re.compile(r"<!--\s*figures:(.*?)-->", re.S)
# Digits, optionally with thousands separators, a point, >= 2 decimals; not
# inside a longer dotted number (a version) or a word.
_FIGURE = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)\.(\d{2,})(?!\.\d)")
_NUMBER = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)\.(\d+)")
_UNIT_FACTORS = {"%": 100.0, "ms": 1000.0, "min": 1 / 60}


def _strip(text: str) -> str:
  """The page without code blocks, code spans, HTML comments, link targets."""
  text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
  text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
  text = re.sub(r"`[^`\n]*`", "", text)
  return re.sub(r"\]\([^)]*\)", "]", text)


def _declaration(page: str) -> tuple[list[str], set[str]]:
  """(sources, other numbers) of a page's `figures:` comment."""
  found = _SOURCES.search(page)
  assert found, "no <!-- figures: ... --> comment"
  body = found.group(1)
  sources, _, other = body.partition("other:")
  sources = re.sub(r"\([^)]*\)", "", sources).split()  # (a remark) is no source.
  return sources, {f"{a.replace(',', '')}.{b}" for a, b in _NUMBER.findall(other)}


def _leaves(value) -> list[float]:
  if isinstance(value, dict):
    return [leaf for v in value.values() for leaf in _leaves(v)]
  if isinstance(value, list):
    return [leaf for v in value for leaf in _leaves(v)]
  if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
    return [abs(float(value))]
  return []


def _table_rows(text: str) -> list[str]:
  return [line.strip() for line in text.splitlines() if line.lstrip().startswith("|")]


def _row_key(row: str) -> tuple[str, ...]:
  """A table row's first two cells: what names it."""
  return tuple(cell.strip() for cell in row.strip().strip("|").split("|")[:2])


def _table_numbers(rows: list[str]) -> list[tuple[float, int]]:
  """(value, decimals) of every decimal number in the rows."""
  return [(float(f"{a.replace(',', '')}.{b}"), len(b))
          for row in rows for a, b in _NUMBER.findall(row)]


def _matches(printed: float, decimals: int, unit: str, leaves, table_numbers) -> bool:
  factors = [1.0] + ([_UNIT_FACTORS[unit]] if unit in _UNIT_FACTORS else [])
  if any(round(leaf * f, decimals) == printed for leaf in leaves for f in factors):
    return True
  return any(d >= decimals and round(v, decimals) == printed for v, d in table_numbers)


def _unchecked_figures(path: str) -> list[str]:
  page = (ROOT / path).read_text()
  sources, other = _declaration(page)
  leaves, table_rows = [], []
  for source in sources:
    if source == "tables":
      table_rows += _table_rows(_strip(page))
    elif source.endswith(".json"):
      leaves += _leaves(json.loads((ROOT / source).read_text()))
    else:
      table_rows += _table_rows((ROOT / source).read_text())
  verbatim = set(table_rows)
  copied = {_row_key(row) for row in table_rows if _NUMBER.search(row)}
  table_numbers = _table_numbers(table_rows)
  wrong = []
  for line in _strip(page).splitlines():
    if line.strip() in verbatim:
      continue
    if ("tables" not in sources and line.lstrip().startswith("|") and _NUMBER.search(line)
        and _row_key(line) in copied):
      wrong.append(f"a row of a named table, changed: {line.strip()[:120]}")
      continue
    for found in _FIGURE.finditer(line):
      whole, decimals = found.group(1).replace(",", ""), found.group(2)
      printed = f"{whole}.{decimals}"
      unit = re.match(r"\s*(%|ms\b|min\b)?", line[found.end():]).group(1) or ""
      if printed in other or _matches(float(printed), len(decimals), unit, leaves,
                                      table_numbers):
        continue
      wrong.append(f"{printed}{unit} in: {line.strip()[:120]}")
  return wrong


@pytest.mark.parametrize("path", PAGES)
def test_figures_in_prose_are_the_tables(path):
  wrong = _unchecked_figures(path)
  assert not wrong, (f"{path}: figures not in its sources (see this test's "
                     "docstring):\n" + "\n".join(wrong))


def test_the_rule_catches_a_changed_figure(tmp_path, monkeypatch):
  """A page quoting a figure one unit off its JSON fails; the true one passes."""
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs/t.json").write_text(json.dumps({"a": {"iou": 0.70915, "s": 0.02641}}))
  monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
  head = "<!-- figures: docs/t.json other: 0.25 (a setting) -->\n"
  cases = {"IoU 0.709, 26.4 ms, 26.41 ms, 0.03x, rate 0.25, jax 0.10.2, `0.123`": [],
           "IoU 0.708": ["0.708"], "12.34 and 0.71": ["12.34"], "26.42 ms": ["26.42ms"]}
  for body, expected in cases.items():
    (tmp_path / "docs/p.md").write_text(head + body + "\n")
    assert [w.split(" ")[0] for w in _unchecked_figures("docs/p.md")] == expected, body
