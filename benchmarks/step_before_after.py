"""Train-step time of the conv models on two checkouts of cvae_jax, in one run.

  git worktree add /tmp/cvae_before b7a0160   # the code before the change
  python -m benchmarks.step_before_after --before=/tmp/cvae_before \
      --json=docs/step_before_after_cpu.json

Each model is the task's own `make_model` and `make_loss_fn` at its config's
sizes and batch (random data of the task's shapes), differentiated and
updated with Adam inside one jitted step; only public names of the tasks are
used, so any two versions compare. Every (model, checkout) runs in its own
subprocess with that checkout first on sys.path; rounds alternate between the
checkouts so that both see the machine's load, and each figure is the best
round's ms/step over `--steps` steps after a compiled warm-up step.
"""

import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from absl import app, flags

_BEFORE = flags.DEFINE_string("before", None, "Checkout of the code before.",
                              required=True)
_AFTER = flags.DEFINE_string("after", str(Path(__file__).resolve().parents[1]),
                             "Checkout of the code after (default: this one).")
_MODELS = flags.DEFINE_list(
    "models", ["segmentation_cvae", "segmentation_hybrid", "prob_unet", "box_cvae",
               "box_hybrid"], "Which models.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds per checkout.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures here.")

# model -> (task module, config module, config overrides, array maker).
MODELS = {
    "segmentation_cvae": ("segmentation", "segmentation", {"model": "cvae"}, "masks"),
    "segmentation_hybrid": ("segmentation", "segmentation", {"model": "hybrid"}, "masks"),
    "prob_unet": ("prob_unet", "prob_unet", {"model": "prob_unet"}, "graders"),
    "box_cvae": ("bbox", "bbox", {"model": "cvae"}, "boxes"),
    "box_hybrid": ("bbox", "bbox", {"model": "hybrid"}, "boxes"),
}

_WORKER = textwrap.dedent("""
    import importlib, json, sys, time
    import jax, jax.numpy as jnp, numpy as np, optax
    task_name, config_name, overrides, arrays_kind, steps = json.loads(sys.argv[1])
    task = importlib.import_module("cvae_jax.tasks." + task_name)
    config = importlib.import_module("train.configs." + config_name).get_config()
    config.update(overrides)
    b, s = config.batch_size, config.image_size
    rng = np.random.default_rng(0)
    if arrays_kind == "boxes":
      arrays = {"image": rng.random((b, s, s, 1)).astype(np.float32),
                "boxes": rng.random((b, 3, 4)).astype(np.float32),
                "labels": np.tile(np.array([[1, 2, -1]], np.int32), (b, 1)),
                "query": np.zeros((b,), np.int32)}
      batch, _ = task.objective_batch(config, arrays, None)
    else:
      graders = 4 if arrays_kind == "graders" else 1
      arrays = {"image": rng.random((b, s, s, 1)).astype(np.float32),
                "masks": (rng.random((b, graders, s, s)) < 0.3).astype(np.float32)}
      if task_name == "segmentation":
        batch = task.objective_batch(config, jnp.asarray(arrays["image"]),
                                     jnp.asarray(arrays["masks"][:, 0]), True)
      else:
        batch = task.objective_batch(jnp.asarray(arrays["image"]),
                                     jnp.asarray(arrays["masks"][:, 0]))
    model = task.make_model(config)
    params = model.init(jax.random.PRNGKey(0), batch["target"], batch["condition"])
    loss_fn = task.make_loss_fn(config, model)
    optimizer = optax.adam(1e-4)

    @jax.jit
    def step(params, opt_state, rng):
      (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, arrays, rng)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    key = jax.random.PRNGKey(1)
    params, opt_state, loss = step(params, opt_state, key)
    loss.block_until_ready()
    start = time.perf_counter()
    for i in range(steps):
      params, opt_state, loss = step(params, opt_state, jax.random.fold_in(key, i))
    loss.block_until_ready()
    print(json.dumps({"ms_per_step": 1e3 * (time.perf_counter() - start) / steps,
                      "loss": float(loss), "batch_size": b, "image_size": s}))
""")


def _time(checkout: str, name: str, steps: int) -> dict:
  env = {**os.environ, "PYTHONPATH": checkout}
  out = subprocess.run([sys.executable, "-c", _WORKER,
                        json.dumps([*MODELS[name], steps])],
                       env=env, cwd=checkout, capture_output=True, text=True,
                       check=False)
  if out.returncode:
    raise SystemExit(f"error: {name} on {checkout} failed:\n{out.stderr[-2000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv):
  del argv
  unknown = sorted(set(_MODELS.value) - set(MODELS))
  if unknown:
    raise SystemExit(f"error: unknown --models {unknown}; use some of {sorted(MODELS)}")
  records = {}
  for name in _MODELS.value:
    rounds = {"before": [], "after": []}
    for r in range(_ROUNDS.value):
      for label, checkout in (("before", _BEFORE.value), ("after", _AFTER.value)):
        figures = _time(checkout, name, _STEPS.value)
        rounds[label].append(figures["ms_per_step"])
        print(f"{name} round {r} {label}: {figures['ms_per_step']:.1f} ms/step",
              flush=True)
    best = {k: min(v) for k, v in rounds.items()}
    records[name] = {"before_ms": best["before"], "after_ms": best["after"],
                     "speedup": best["before"] / best["after"],
                     "batch_size": figures["batch_size"],
                     "image_size": figures["image_size"], "rounds_ms": rounds}
  print("\n| model | batch, size | before ms/step | after ms/step | speed-up |")
  print("|---|---|---|---|---|")
  for name, rec in records.items():
    print(f"| {name} | {rec['batch_size']}, {rec['image_size']}x{rec['image_size']} "
          f"| {rec['before_ms']:.1f} | {rec['after_ms']:.1f} | {rec['speedup']:.2f}x |")
  if _JSON.value:
    Path(_JSON.value).write_text(json.dumps({
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
        "steps": _STEPS.value, "rounds": _ROUNDS.value,
        "before": _BEFORE.value, "records": records}, indent=1) + "\n")


if __name__ == "__main__":
  app.run(main)
