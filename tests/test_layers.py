"""Dependencies run one way: read from the source's imports (function-level
imports included), no module imported."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "cvae_jax"

# Lower layers of the library: none of them may import `cvae_jax.training`.
LOWER = ("distributions", "estimators", "objectives", "metrics", "box_metrics",
         "evaluation", "plotting", "sampling", "sharding", "distributed",
         "errors", "models", "data", "evaluators", "schedules", "configs",
         "model_check")


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
  """cvae_jax module -> the cvae_jax modules it imports."""
  graph = {}
  modules = {_module_name(p) for p in ROOT.rglob("*.py")}
  for path in ROOT.rglob("*.py"):
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module:
        names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
      else:
        continue
      found.update(n for n in names if n in modules)
    graph[_module_name(path)] = found - {_module_name(path)}
  return graph


def _layer(module: str) -> str:
  return module.split(".")[1] if module.count(".") else module


def test_no_import_circle():
  graph = _imports()
  state = {}

  def visit(module, stack):
    state[module] = "open"
    for other in sorted(graph.get(module, ())):
      if other.startswith(module + "."):  # A package importing its own parts.
        continue
      if state.get(other) == "open":
        pytest.fail(f"import circle: {' -> '.join(stack + [module, other])}")
      if other not in state:
        visit(other, stack + [module])
    state[module] = "done"

  for module in sorted(graph):
    if module not in state:
      visit(module, [])


@pytest.mark.parametrize("layer", LOWER)
def test_lower_layers_do_not_import_training(layer):
  graph = _imports()
  offenders = {m: sorted(i for i in imports if _layer(i) in ("training", "tasks"))
               for m, imports in graph.items() if _layer(m) == layer}
  assert not any(offenders.values()), offenders


def test_data_knows_no_model():
  graph = _imports()
  offenders = {m: sorted(i for i in imports if _layer(i) == "models")
               for m, imports in graph.items() if _layer(m) == "data"}
  assert not any(offenders.values()), offenders


def test_estimators_do_not_import_objectives():
  """distributions -> estimators -> objectives."""
  graph = _imports()
  assert "cvae_jax.objectives" not in graph["cvae_jax.estimators"]
  assert "cvae_jax.estimators" in graph["cvae_jax.objectives"]
