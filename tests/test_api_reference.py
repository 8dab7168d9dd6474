"""The API reference builds from the docstrings without a warning, every public
module says what it exports (`__all__`), and the release files are in place.

The reference is pdoc's; the same build from a shell (it writes build/api/):

  PDOC_ALLOW_EXEC=1 python -W error -W ignore::DeprecationWarning \
      -m pdoc -d google -o build/api cvae_jax
"""

import importlib
import pathlib
import re
import subprocess
import sys
import warnings

import pdoc
import pdoc.render
import pytest
import yaml

import cvae_jax

ROOT = pathlib.Path(__file__).resolve().parents[1]


def public_modules() -> list[str]:
  """Every module of the package's source tree without a leading underscore
  in its dotted name, found without importing anything."""
  names = []
  for path in sorted((ROOT / "cvae_jax").rglob("*.py")):
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    if not any(part.startswith("_") for part in parts):
      names.append(".".join(parts))
  return names


@pytest.fixture(scope="module")
def api_reference(tmp_path_factory) -> pathlib.Path:
  """The reference's HTML, built in-process with every warning an error."""
  out = tmp_path_factory.mktemp("api")
  with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
    # pdoc turns subprocesses started while importing into no-ops, with a
    # warning; a dependency asks `uname -p` (platform.processor()) on import.
    patch.setenv("PDOC_ALLOW_EXEC", "1")
    warnings.simplefilter("error")
    # As setup.cfg's pytest settings: dependencies' deprecations are theirs.
    warnings.simplefilter("ignore", DeprecationWarning)
    pdoc.render.configure(docformat="google")
    pdoc.pdoc("cvae_jax", output_directory=out)
  return out


def test_the_reference_has_a_page_for_each_public_module(api_reference):
  missing = [name for name in public_modules()
             if not (api_reference / (name.replace(".", "/") + ".html")).exists()]
  assert not missing  # A package's `__all__` names its submodules.
  text = (api_reference / "cvae_jax/objectives.html").read_text()
  assert "per_example_objective" in text and "negative_elbo" in text


def test_each_public_module_has_all_and_its_names_exist():
  without, unresolved = [], []
  for name in public_modules():
    module = importlib.import_module(name)
    if not hasattr(module, "__all__"):
      without.append(name)
      continue
    assert len(set(module.__all__)) == len(module.__all__), name
    for exported in module.__all__:
      if hasattr(module, exported):
        continue
      try:  # A package lists its submodules too.
        importlib.import_module(f"{name}.{exported}")
      except ImportError:
        unresolved.append(f"{name}.{exported}")
  assert not without
  assert not unresolved


def test_import_cvae_jax_loads_no_submodule():
  # A fresh interpreter: the tests' own imports are in sys.modules here.
  code = ("import sys, cvae_jax; "
          "print(sorted(m for m in sys.modules if m.startswith(('cvae_jax.', 'jax', "
          "'tensorflow'))))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, cwd=ROOT).stdout
  assert out.strip() == "[]", out


def test_license_is_apache_2():
  text = (ROOT / "LICENSE").read_text()
  assert text.lstrip().startswith("Apache License")
  for line in ("Version 2.0, January 2004", "http://www.apache.org/licenses/",
               "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
               "END OF TERMS AND CONDITIONS", "Copyright 2026 The cvae_jax Authors"):
    assert line in text, line
  assert re.search(r"^license = Apache-2.0$", (ROOT / "setup.cfg").read_text(), re.M)


def test_citation_cff_names_the_software_and_the_papers():
  citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
  assert citation["cff-version"] == "1.2.0"
  for key in ("message", "title", "authors", "version", "license", "type"):
    assert citation.get(key), key
  assert citation["version"] == cvae_jax.__version__
  assert citation["license"] == "Apache-2.0"
  assert citation["type"] == "software"
  titles = []
  for reference in citation["references"]:
    for key in ("type", "title", "authors"):
      assert reference.get(key), (reference.get("title"), key)
    titles.append(reference["title"])
  for paper in ("Learning Structured Output Representation using Deep Conditional "
                "Generative Models",
                "A Probabilistic U-Net for Segmentation of Ambiguous Images",
                "Auto-Encoding Variational Bayes"):
    assert paper in titles, paper


def test_changelog_has_the_current_version():
  text = (ROOT / "CHANGELOG.md").read_text()
  assert text.startswith("# Changelog")
  assert re.search(rf"^## \[{re.escape(cvae_jax.__version__)}\] - \d{{4}}-\d\d-\d\d$",
                   text, re.M), cvae_jax.__version__
