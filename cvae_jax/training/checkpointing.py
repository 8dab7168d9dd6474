"""Orbax checkpoints of the TrainState in `workdir/checkpoints`.

Restoring falls back to the previous checkpoint when the latest cannot be read
(a run killed while writing, a truncated file); the unreadable one is moved to
`workdir/unreadable_checkpoints/` rather than deleted, so nothing is lost.
Under jax.distributed every process saves and restores (orbax writes one set
of files) and process 0 alone moves unreadable ones aside.
Orbax is imported when the first Checkpointer is made (a config check, which
imports the trainer, does not pay its 0.3 s).
"""

import shutil
from pathlib import Path
from typing import Any

from absl import logging
import jax

from cvae_jax.errors import UserError
from cvae_jax import distributed, sharding

__all__ = ["Checkpointer"]


def _array_signature(tree) -> list[tuple[tuple[int, ...], str]]:
  """The sorted (shape, dtype) of every array leaf: equal for the same model
  and optimiser, whatever container types the checkpoint stored them in."""
  return sorted((tuple(leaf.shape), str(leaf.dtype))
                for leaf in jax.tree.leaves(tree) if hasattr(leaf, "shape"))


class Checkpointer:
  """Saves every call to `save` (the trainer decides when) and keeps the last N."""

  def __init__(self, workdir: str | Path, max_to_keep: int):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    self._ocp = ocp
    self._workdir = Path(workdir).expanduser().absolute()  # Orbax needs absolute.
    self.directory = self._workdir / "checkpoints"
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True,
        # A synchronous save is on disk when `save` returns, so SIGKILL right
        # after it cannot lose it; saves are rare enough for this to be cheap.
        enable_async_checkpointing=False)
    # The handler is named so that a fresh manager can read item metadata.
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers=ocp.StandardCheckpointHandler())

  def save(self, state: Any) -> None:
    """Saves `state` at its step, on disk when this returns (a step already
    saved is left as it is)."""
    step = int(state.step)
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=self._ocp.args.StandardSave(state),
                       force=True)
    self._manager.wait_until_finished()

  def latest_step(self) -> int | None:
    """The newest saved step; None if there is none."""
    return self._manager.latest_step()

  def restore_latest(self, template: Any) -> Any | None:
    """The newest readable checkpoint, placed like `template`; None if none.

    Args:
      template: a state with the target structure, shapes, dtypes and
        shardings (its values are not used); None: the saved tree as it is
        (nested dicts of arrays on the default device), for reading params.

    Raises:
      UserError: the checkpoints hold arrays of other shapes (another model
        or optimiser): they are left untouched.
    """
    ocp = self._ocp
    abstract = (None if template is None else
                jax.tree.map(ocp.utils.to_shape_dtype_struct, template))
    expected = None if template is None else _array_signature(abstract)
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        metadata = self._manager.item_metadata(step)
      except Exception as e:  # pylint: disable=broad-except
        self._report_unreadable(step, e)
        continue
      if (metadata is not None and expected is not None
          and _array_signature(metadata.tree) != expected):
        raise UserError(
            f"{self.directory} holds checkpoints of another model or optimiser "
            f"(step {step}); pass a new --workdir or the config they were "
            "trained with")
      try:
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract)
                                     if abstract is not None else None)
      except Exception as e:  # pylint: disable=broad-except
        self._report_unreadable(step, e)
    return None

  def _report_unreadable(self, step: int, error: Exception) -> None:
    """Moves the checkpoint aside. Under jax.distributed every process finds
    the same files unreadable; process 0 moves them and the others wait for
    it before they look at the checkpoints again."""
    moved_to = (self._move_aside(step) if sharding.is_main_process()
                else f"{self._workdir / 'unreadable_checkpoints'} (by process 0)")
    distributed.sync(f"checkpoint {step} moved aside")
    self._manager.reload()
    logging.warning("checkpoint %d is unreadable (%s: %s); moved it to %s",
                    step, type(error).__name__, str(error)[:200], moved_to)
    print(f"warning: checkpoint {step} is unreadable; moved it to {moved_to} "
          "and trying the previous one", flush=True)

  def _move_aside(self, step: int) -> Path:
    target_dir = self._workdir / "unreadable_checkpoints"
    target_dir.mkdir(exist_ok=True)
    target = target_dir / str(step)
    suffix = 0
    while target.exists():
      suffix += 1
      target = target_dir / f"{step}.{suffix}"
    shutil.move(str(self.directory / str(step)), target)
    return target

  def close(self) -> None:
    """Releases the checkpoint manager."""
    self._manager.close()
