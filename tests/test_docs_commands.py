"""Every command on a page is a test: each `python -m ...` in README.md,
docs/*.md and the notebooks' text (fenced blocks and inline code, `\\`
continuations joined, split at `&&`, `;` and `|`) is run as written, in
this process and without training, as far as its entry point's own checks:

  * the module exists (`importlib.util.find_spec`);
  * its absl flags parse: every flag is one the module defines, every
    `--config.KEY=VALUE` names a key of the `--config=` file and has its
    type, every list flag of a benchmark holds known values;
  * it passes the entry point's validation as written: a `train.*` command
    runs `cvae_jax.cli.run` until the runner would read data (the task's
    `validate(config, workdir)`, the model, the evaluators the config
    names and the finished-run check included), a benchmark up to its `main`,
    an argparse script up to its work. The command runs in a scratch folder
    that links the checkout's files but has no workdirs/, as a fresh clone.

Exemptions (each named below with its reason): commands of other tools
(venv, pytest: their module must exist), a synopsis with placeholders (its
flag names are checked), commands that need a finished run or a dataset the
page tells the reader to fetch (their flags and keys are checked, not their
validation), a module the tutorial's reader writes. A multi-process
command is checked up to where jax.distributed would connect. When torch is
not installed (it is a benchmark-only dependency) the speed scripts' modules
run with a stand-in for it: only their flags are parsed, nothing is timed.

At this writing the pages hold 73 such commands (README.md 14, docs/*.md 54,
the notebooks 5); `test_every_page_has_commands` keeps the collector honest.
Also here: a benchmark's bad flag value is refused in one line, and a
--quick run never writes over a published table.
"""

import contextlib
import dataclasses
import importlib
import importlib.util
import io
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

# Modules that are not this project's: only their existence is checked.
OTHER_TOOLS = {"venv": "the standard library's", "pytest": "the test runner's",
               "pdoc": "the API reference builder's"}
# A user's own code that the tutorial shows how to write.
READERS_OWN = {
    "my_project.": "the tutorial's example of the reader's own entry point",
    "my_models:": "the tutorial's model factory, a module the reader writes",
}
# Commands whose validation needs what a fresh clone does not have (the page
# says so): their flags and --config.* keys are checked, not the rest.
NEEDS_MORE_THAN_A_CLONE = {
    "cvae_jax.evaluate": "evaluates a finished run (DIR/results.json); its "
                         "--config.* keys are checked against the page's "
                         "train command with the same --workdir",
    "--config.data.lidc_path=/path/to": "reads the LIDC pickle the page says "
                                        "where to download",
}
# Commands that fail because their page is wrong: {(page, a part of the
# command): what is wrong}. They are expected to fail until the page is
# fixed (strict: one that passes is reported, so that it leaves the list).
PAGE_FIXES_PENDING = {}

_COMMAND = re.compile(r"\bpython3? -m [\w.]+")
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
_PLACEHOLDER = re.compile(r"[\[\]<>]|\.\.\.|=[A-Z][A-Z_]*(:[A-Z]+)?$")


@dataclasses.dataclass(frozen=True)
class Command:
  """One `python -m` command of a page: where it is and its words."""
  page: str
  line: int
  text: str

  @property
  def words(self) -> list[str]:
    """[module, *arguments], brackets of a synopsis kept."""
    try:
      words = shlex.split(self.text)
    except ValueError:  # A command inside a quoted --command="...".
      words = shlex.split(self.text.replace('"', "").replace("'", ""))
    return words[words.index("-m") + 1:]

  @property
  def module(self) -> str:
    return self.words[0]

  @property
  def arguments(self) -> list[str]:
    return self.words[1:]

  @property
  def id(self) -> str:
    return f"{self.page}:{self.line}:{self.module}"

  def flag(self, name: str) -> str | None:
    for word in self.arguments:
      if word.startswith(f"--{name}="):
        return word.split("=", 1)[1]
    return None

  def reason(self, table: dict) -> str | None:
    """The reason `table` gives for this command: a key is a module, a
    module prefix ("package.") or a part of the text ("--flag=...", "x:")."""
    for part, why in table.items():
      if (part in self.text if part.startswith("--") or part.endswith(":") else
          self.module.startswith(part) if part.endswith(".") else self.module == part):
        return why
    return None

  @property
  def is_synopsis(self) -> bool:
    return any(_PLACEHOLDER.search(word) for word in self.arguments)


def _pieces(code: str):
  """Each simple command of a shell line, comments dropped."""
  code = re.sub(r"(^|\s)#.*$", "", code, flags=re.M)
  yield from re.split(r"&&|;|\|\|?", code)


def commands_in(page: str, text: str) -> list[Command]:
  """The `python -m` commands of a Markdown text: fenced blocks (logical
  lines, `\\` continuations joined) and inline code spans (which may cross
  a line break)."""
  found = []

  def add(offset: int, code: str):
    for piece in _pieces(re.sub(r"\\\n\s*", " ", code).replace("\n", " ")):
      match = _COMMAND.search(piece)
      if match:
        found.append(Command(page, 1 + text.count("\n", 0, offset),
                             piece[match.start():].strip()))

  blanked = text
  for block in _FENCE.finditer(text):
    start, logical = block.start(1), ""
    for line in block.group(1).splitlines(keepends=True):
      if not logical:
        line_start = start
      logical, start = logical + line, start + len(line)
      if not line.rstrip("\n").endswith("\\"):
        add(line_start, logical)
        logical = ""
    blanked = (blanked[:block.start()] + re.sub(r"[^\n]", " ", block.group())
               + blanked[block.end():])
  for span in _INLINE.finditer(blanked):
    add(span.start(1), span.group(1))
  return sorted(found, key=lambda c: c.line)


def collect() -> list[Command]:
  """Every command of the README, docs/*.md and the notebooks' cells (a
  notebook's page is `notebooks/NAME.ipynb[cell I]`, I from 0)."""
  found = []
  for path in PAGES:
    found += commands_in(path.relative_to(REPO).as_posix(), path.read_text())
  for path in NOTEBOOKS:
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
      found += commands_in(f"{path.relative_to(REPO).as_posix()}[cell {i}]",
                           "".join(cell["source"]))
  return found


COMMANDS = collect()


# Running an entry point in this process, stopped where its work would start.

class _Passed(Exception):
  """The command got past its checks to where it would start working."""


class _Connecting(Exception):
  """jax.distributed would connect to the other processes now."""


@dataclasses.dataclass
class _Outcome:
  code: int | None = None  # The exit code; None: it passed.
  stderr: str = ""
  task: str | None = None  # A cvae_jax.cli entry point's task module.
  config: object = None  # The config its train_and_evaluate got.

  @property
  def error(self) -> str:
    lines = [l for l in self.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if "error" in l.lower()]
    return (errors or lines or [f"exit code {self.code}"])[-1]


@contextlib.contextmanager
def _flags_of_a_fresh_process():
  """absl's FLAGS holding only absl's own flags for the duration (an entry
  point defines its flags again, as a new process would), restored after."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  state = vars(flags.FLAGS)
  saved = {key: ({k: list(v) if isinstance(v, list) else v for k, v in value.items()}
                 if isinstance(value, dict) else
                 set(value) if isinstance(value, set) else value)
           for key, value in state.items()}
  for name in {flag.name for module, defined in flags.FLAGS.flags_by_module_dict().items()
               if not module.startswith("absl.") for flag in defined}:
    if name in flags.FLAGS:
      delattr(flags.FLAGS, name)
  flags.FLAGS.unparse_flags()
  try:
    yield flags.FLAGS
  finally:
    flags.FLAGS.unparse_flags()
    state.clear()
    state.update(saved)


@contextlib.contextmanager
def _torch_stand_in():
  """A stand-in for torch while the speed scripts' flags are parsed, when
  torch (a benchmark-only dependency) is not installed; the benchmark
  modules imported meanwhile are forgotten after."""
  if importlib.util.find_spec("torch") is not None:
    yield
    return
  before = set(sys.modules)
  names = ("torch", "torch.nn", "torch.nn.functional", "torch.optim")
  sys.modules.update({name: mock.MagicMock(name=name) for name in names})
  try:
    yield
  finally:
    for name in set(sys.modules) - before:
      if name in names or name.startswith("benchmarks."):
        del sys.modules[name]


def _names_only(flags_module, arguments: list[str]) -> None:
  """A synopsis: each --name (brackets stripped) is a flag the module
  defined, each --config.KEY a key of the default config."""
  from cvae_jax import cli  # pylint: disable=g-import-not-at-top
  for word in arguments:
    name = word.strip("[]").split("=")[0]
    if not name.startswith("--"):
      continue
    name = name[2:]
    if name.startswith("config.") and "config" in flags_module.FLAGS:
      config = flags_module.FLAGS["config"].value
      reason = cli.unknown_key(name[len("config."):], config)
      if reason is not None and "<" not in name:
        raise SystemExit(f"error: {reason}")
    elif name not in flags_module.FLAGS and name.removeprefix("no") not in flags_module.FLAGS:
      raise SystemExit(f"error: unknown flag --{name}")


def run_in_process(module: str, arguments: list[str], cwd: Path,
                   mode: str = "validate") -> _Outcome:
  """Runs `python -m module arguments` in this process from `cwd`, stopped
  before its work. mode: "validate" (as far as its own checks go), "parse"
  (its flags only) or "names" (a synopsis: its flag names only)."""
  from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
  from cvae_jax import cli, distributed, runner  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  outcome = _Outcome()
  real_cli_run, real_initialize = cli.run, distributed.initialize

  def cli_run(task, default_config):
    outcome.task = task
    real_cli_run(task, default_config)

  # The runner's steps before any data (its checks, the model, the
  # evaluators by name, the finished-run check) run; then the command stops.
  before_data = "_prepare" if hasattr(runner, "_prepare") else "run"
  real_before_data = getattr(runner, before_data)

  def stop_before_data(task, config, workdir, *args, **kwargs):
    if before_data != "run":
      real_before_data(task, config, workdir, *args, **kwargs)
    outcome.config = config
    raise _Passed

  def app_run(main, argv=None, flags_parser=app.parse_flags_with_usage):
    app.define_help_flags()
    if mode == "names":
      _names_only(flags, arguments)
      raise _Passed
    argv = flags_parser(list(sys.argv) if argv is None else argv)
    if mode == "validate" and outcome.task is not None:
      main(argv)  # The entry point's checks; train_and_evaluate stops it.
    raise _Passed

  def initialize(*args, **kwargs):  # The process flags' checks, no connection.
    try:
      return real_initialize(*args, **kwargs)
    except _Connecting:
      return False

  real_parse_args = __import__("argparse").ArgumentParser.parse_args

  def parse_args(self, *args, **kwargs):
    real_parse_args(self, *args, **kwargs)
    raise _Passed

  stderr, verbosity, old_cwd = io.StringIO(), logging.get_verbosity(), os.getcwd()
  with contextlib.ExitStack() as stack:
    stack.enter_context(_flags_of_a_fresh_process())
    if module.startswith("benchmarks."):
      stack.enter_context(_torch_stand_in())
    stack.enter_context(mock.patch.object(app, "run", app_run))
    stack.enter_context(mock.patch.object(cli, "run", cli_run))
    stack.enter_context(mock.patch.object(runner, before_data, stop_before_data))
    stack.enter_context(mock.patch.object(distributed, "initialize", initialize))
    stack.enter_context(mock.patch.object(
        jax.distributed, "initialize", mock.Mock(side_effect=_Connecting)))
    stack.enter_context(mock.patch("argparse.ArgumentParser.parse_args", parse_args))
    stack.enter_context(mock.patch.object(sys, "argv", [module, *arguments]))
    stack.enter_context(contextlib.redirect_stderr(stderr))
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    os.chdir(cwd)
    try:
      runpy.run_module(module, run_name="__main__", alter_sys=True)
      outcome.code = 0  # Ran to its end without reaching a stop: a script with no work.
    except _Passed:
      pass
    except SystemExit as e:
      outcome.code = e.code if isinstance(e.code, int) else 1
      if isinstance(e.code, str):
        print(e.code, file=sys.stderr)
    except app.UsageError as e:
      outcome.code = 1
      print(f"error: {e}", file=sys.stderr)
    finally:
      os.chdir(old_cwd)
      logging.set_verbosity(verbosity)
  outcome.stderr = stderr.getvalue()
  return outcome


def _exists(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:  # Its package is missing.
    return False


def _takes_arguments(module: str) -> bool:
  """Whether the module's command line reads arguments at all."""
  source = Path(importlib.util.find_spec(module).origin).read_text()
  return any(word in source for word in (
      "app.run(", "cli.run(", "harness.run(", "speed_main(", "argparse", "sys.argv"))


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory) -> Path:
  """A folder that links every top-level entry of the checkout but
  workdirs/ (a fresh clone's view: no earlier runs)."""
  root = tmp_path_factory.mktemp("clone")
  for entry in REPO.iterdir():
    if entry.name not in ("workdirs", ".git"):
      (root / entry.name).symlink_to(entry)
  return root


@pytest.fixture(autouse=True)
def _repository_importable(monkeypatch):
  monkeypatch.syspath_prepend(str(REPO))


def _train_command_for(command: Command) -> Command | None:
  """The page's train command with the same --workdir as `command`."""
  workdir = command.flag("workdir")
  return next((c for c in COMMANDS if c.page == command.page
               and c.module.startswith("train.") and c.flag("workdir") == workdir), None)


def _check_evaluate(command: Command, clone: Path) -> None:
  """cvae_jax.evaluate's own argument checks, and its --config.* keys
  against the config of the run it would evaluate (the page's train command
  with the same --workdir), through evaluate's own rules."""
  from cvae_jax import evaluate, runner  # pylint: disable=g-import-not-at-top
  from cvae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from cvae_jax.training import results  # pylint: disable=g-import-not-at-top
  arguments = [w.strip("[]") for w in command.arguments if w.strip("[]") != "..."]
  try:
    given, overrides = evaluate._split_argv(arguments)  # pylint: disable=protected-access
    train = _train_command_for(command)
    if train is None or command.is_synopsis:
      return
    trained = run_in_process(train.module, train.arguments, clone)
    assert trained.code is None, f"{train.id}: {trained.error}"
    task = importlib.import_module(trained.task).TASK
    evaluate._apply(  # pylint: disable=protected-access
        trained.config, overrides,
        (*task.evaluation_keys, *results.RUNTIME_KEYS, *task.runtime_keys),
        train.id)
    if "evals" in given:
      runner.build_evaluators(task, trained.config, task.make_model(trained.config),
                              given["evals"].split(","))
  except UserError as e:
    pytest.fail(f"{command.id}: error: {e}")


def _params():
  for command in COMMANDS:
    pending = next((why for (page, part), why in PAGE_FIXES_PENDING.items()
                    if command.page == page and part in command.text), None)
    marks = ([pytest.mark.xfail(strict=True, reason=f"page fix pending: {pending}")]
             if pending else [])
    yield pytest.param(command, id=command.id, marks=marks)


@pytest.mark.parametrize("command", list(_params()))
@pytest.mark.filterwarnings(  # offline_mnist's __main__ imports itself (its builder's name).
    "ignore:.*found in sys.modules after import of package:RuntimeWarning")
def test_command_runs_as_written(command: Command, fresh_clone: Path):
  assert _exists(command.module) or command.reason(READERS_OWN), (
      f"{command.id}: no module {command.module}")
  if command.reason(OTHER_TOOLS) or command.reason(READERS_OWN):
    return
  if command.module == "cvae_jax.evaluate":
    _check_evaluate(command, fresh_clone)
    return
  if not _takes_arguments(command.module):
    assert not command.arguments, f"{command.id}: {command.module} takes no arguments"
    return
  mode = ("names" if command.is_synopsis else
          "parse" if command.reason(NEEDS_MORE_THAN_A_CLONE) else "validate")
  outcome = run_in_process(command.module, command.arguments, fresh_clone, mode)
  assert outcome.code is None, f"{command.id}: {command.text}\n  -> {outcome.error}"


def test_every_page_has_commands():
  pages = {c.page.split("[")[0] for c in COMMANDS}
  assert "README.md" in pages and any(p.startswith("docs/") for p in pages), pages
  assert any(p.startswith("notebooks/") for p in pages), pages
  for page, part in PAGE_FIXES_PENDING:
    assert any(c.page == page and part in c.text for c in COMMANDS), (
        f"{page} no longer has {part!r}: take it off PAGE_FIXES_PENDING")


def test_collector_reads_continuations_and_inline_code():
  text = ("Run\n\n```bash\npython -m train.x --config=c.py \\\n    --workdir=w"
          "  # a comment\npip install y && python3 -m venv .venv\n```\n\n"
          "then `python -m benchmarks.t\n--quick` and `python -m a.b --f=DIR`.\n")
  found = [(c.line, c.module, c.arguments) for c in commands_in("p.md", text)]
  assert found == [(4, "train.x", ["--config=c.py", "--workdir=w"]),
                   (6, "venv", [".venv"]),
                   (9, "benchmarks.t", ["--quick"]),
                   (10, "a.b", ["--f=DIR"])], found
  assert Command("p.md", 10, "python -m a.b --f=DIR").is_synopsis


@pytest.mark.parametrize("module, arguments, expected", [
    ("benchmarks.toy_mixture_table", ["--seeds=0,x"],
     "--seeds takes a comma-separated list of whole numbers >= 0"),
    ("benchmarks.segmentation_speed", ["--jax_variants=jax_no_ynn_conv"],
     "--jax_variants takes a comma-separated list of jax_ynnpack, jax_eigen"),
    ("benchmarks.speed_table", ["--jax_variants=jax_eigen"],
     "Unknown command line flag 'jax_variants'"),
    ("benchmarks.mnist_label_seeds", ["--override=--config.learnin_rate=1"],
     "--override takes --config.KEY=VALUE"),
    ("train.mnist_label", ["--config=train/configs/mnist_label.py",
                           "--workdir=w", "--config.learnin_rate=1"],
     "unknown config key 'learnin_rate' (did you mean 'learning_rate'?)"),
])
def test_a_bad_flag_value_is_refused(module, arguments, expected, fresh_clone):
  outcome = run_in_process(module, arguments, fresh_clone)
  assert outcome.code == 2 and expected in outcome.error, outcome.stderr
  assert outcome.stderr.count("\n") == 1, outcome.stderr


def test_a_bad_benchmark_flag_is_one_line_as_a_user_sees_it():
  """The one process of this file: exactly one line on stderr, exit 2."""
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.speed_table", "--quick=maybe"],
      cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 2, result.stderr
  assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, (
      result.stderr)


@pytest.mark.parametrize("module, function", [
    ("benchmarks.speed_table", "output_path"),
    ("benchmarks.scaling", "output_path"),
    *((f"benchmarks.{p.stem}", "_TABLE.output_path")
      for p in sorted((REPO / "benchmarks").glob("*_table.py"))
      if p.stem != "speed_table"),
])
def test_quick_never_writes_the_published_table(module, function):
  from absl import flags  # pylint: disable=g-import-not-at-top
  with _flags_of_a_fresh_process(), _torch_stand_in():
    sys.modules.pop(module, None)
    try:
      loaded = importlib.import_module(module)
      path_of = loaded
      for part in function.split("."):
        path_of = getattr(path_of, part)
      flags.FLAGS([module, "--quick"])
      quick = path_of()
      flags.FLAGS.unparse_flags()
      flags.FLAGS([module])
      published = path_of()
      flags.FLAGS.unparse_flags()
      flags.FLAGS([module, "--quick", "--output=/tmp/x.md"]
                  if "output" in flags.FLAGS else [module, "--quick", "--json=/tmp/x.json"])
      explicit = path_of()
    finally:
      sys.modules.pop(module, None)
  assert published.parts[0] == "docs", published
  assert "docs" not in quick.parts and quick.name == published.name, quick
  assert str(explicit).startswith("/tmp/x"), explicit


def test_the_repository_url_is_read_from_one_place():
  """notebooks/repository.txt holds the repository's URL; each notebook's
  Colab badge (its first cell) and its setup cell's clone URL, and the
  README's `pip install ... @ git+URL`, are that URL (a fork changes the
  file, then these)."""
  url = (REPO / "notebooks" / "repository.txt").read_text().strip()
  owner_and_name = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)", url).group(1)
  for path in NOTEBOOKS:
    cells = json.loads(path.read_text())["cells"]
    badge = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
             f"(https://colab.research.google.com/github/{owner_and_name}/blob/main/"
             f"notebooks/{path.name})")
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]) == badge, (
        f"{path.name}: the first cell is not its Colab badge")
    code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert set(re.findall(r'"CVAE_JAX_REPO_URL", "([^"]+)"', code)) == {url}, path.name
  readme = (REPO / "README.md").read_text()
  assert set(re.findall(r"git\+(https://[^\s\"`]+)", readme)) == {url}
