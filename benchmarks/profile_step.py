"""Where a conv model's train step spends its time on this CPU, beside the
same step in PyTorch, and the floor its convolutions set.

  python -m benchmarks.profile_step --profile_json=docs/profile_cpu.json
  python -m benchmarks.profile_step --profile_models=prob_unet_lidc --profile_calls=1

Per model (the speed scripts' configs and random batches; JAX compiled as
the trainer compiles it, `cvae_jax.backends`):
  * phases: forward (the loss), forward + backward (`jax.value_and_grad`),
    the whole train step (Adam included): backward = (f + b) - f,
    optimiser = step - (f + b), beside Adam's update timed alone (both
    differences of separately timed calls: within this machine's noise,
    ~5%, they can come out negative; timed in turns in one process, the
    step with Adam and the gradients alone differ by less than that);
  * every convolution of the forward + backward jaxpr, each timed alone as
    its own jitted op on inputs of its shapes, under YNNPACK and Eigen
    (`backends`), with XLA's FLOP count: by direction (forward: the same
    shapes and parameters as a convolution of the forward jaxpr; weight
    gradient: an output of a kernel's shape; the rest: input gradients) and
    map size; beside each, PyTorch's op for it on the same shapes (the
    forward conv, or one output of its backward) at 1 and 2 threads;
  * the rest of the step (pooling, resizing, elementwise, reductions,
    matmuls, the optimiser) = the step - its convolutions, as timed alone
    under the step's own library;
  * the floor: every convolution at the faster library's time, the rest as
    measured (so "floor" is what choosing per convolution could reach);
  * PyTorch (1 thread, its best thread count on this machine): the same
    step's self CPU time by op kind from `torch.profiler`.
Each time is the best of --profile_repeats rounds. Prints Markdown tables;
--profile_json also writes the figures (a model not run keeps its record).
"""

import collections
import subprocess
import sys
import time

from absl import app, flags
import jax
from jax.extend import core as jax_core
import jax.numpy as jnp
import numpy as np
import optax

from cvae_jax import backends
from benchmarks import speed_harness

# Named apart from the speed scripts' flags, which `setup` imports (one model
# per process: two speed scripts define the same flags).
_MODELS = flags.DEFINE_list(
    "profile_models", ["prob_unet_offline", "segmentation_offline", "bbox"],
    "Any of prob_unet_offline, prob_unet_lidc, segmentation_offline, "
    "segmentation_cub, bbox; each is profiled in its own process.")
_REPEATS = flags.DEFINE_integer("profile_repeats", 3, "Rounds; the best counts.")
_CALLS = flags.DEFINE_integer("profile_calls", 5,
                              "Calls per round (1 for the 128x128 configs).")
_JSON = flags.DEFINE_string("profile_json", None, "Also write the figures here.")


def setup(name: str):
  """(config, params, loss_fn, arrays, torch step factory, torch batch)."""
  # pylint: disable=g-import-not-at-top
  import torch
  if name.startswith("prob_unet"):
    from benchmarks import prob_unet_speed, pytorch_prob_unet
    from cvae_jax.tasks import prob_unet
    config = prob_unet_speed._config(name.split("_")[-1])  # pylint: disable=protected-access
    model = prob_unet.make_model(config)
    arrays = prob_unet_speed.random_arrays(config)
    params = prob_unet_speed.init_params(config, model)
    loss_fn = prob_unet.make_loss_fn(config, model)
    torch_step = lambda: pytorch_prob_unet.make_train_step(config, 1)
    torch_batch = (torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2).contiguous(),
                   torch.from_numpy(arrays["masks"]))
  elif name.startswith("segmentation"):
    from benchmarks import pytorch_segmentation, segmentation_speed
    from cvae_jax.tasks import segmentation
    config = segmentation_speed._CONFIG_MODULES[name.split("_")[-1]].get_config()  # pylint: disable=protected-access
    arrays = pytorch_segmentation.random_arrays(config)
    model = segmentation.make_model(config)
    example = segmentation.objective_batch(
        config, jnp.asarray(arrays["image"][:1]), jnp.asarray(arrays["masks"][:1, 0]),
        training=False)
    params = model.init(jax.random.PRNGKey(0), example["target"], example["condition"])
    loss_fn = segmentation.make_loss_fn(config, model)
    channels = pytorch_segmentation.in_channels(config)
    torch_step = lambda: pytorch_segmentation.make_train_step(config, channels)
    torch_batch = (torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2).contiguous(),
                   torch.from_numpy(arrays["masks"]))
  elif name == "bbox":
    from benchmarks import pytorch_bbox
    from cvae_jax.tasks import bbox
    config = pytorch_bbox.get_config()
    model = bbox.make_model(config)
    raw = pytorch_bbox.random_arrays(config)
    arrays = pytorch_bbox.task_arrays(raw)
    params = pytorch_bbox.init_params(config, model)
    loss_fn = bbox.make_loss_fn(config, model)
    torch_step = lambda: pytorch_bbox.make_train_step(config)
    torch_batch = (torch.from_numpy(raw["image"]).permute(0, 3, 1, 2).contiguous(),
                   torch.from_numpy(raw["boxes"]))
  else:
    raise app.UsageError(f"--profile_models: unknown model {name!r}")
  return config, params, loss_fn, arrays, torch_step, torch_batch


def best_seconds(fn, repeats: int, calls: int) -> float:
  """Best over `repeats` rounds of the mean seconds of `calls` calls of fn()."""
  jax.block_until_ready(fn())  # Compile / warm up.
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      out = fn()
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - start) / calls)
  return best


def _sub_jaxprs(value):
  if isinstance(value, jax_core.ClosedJaxpr):
    yield value.jaxpr
  elif isinstance(value, jax_core.Jaxpr):
    yield value
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _sub_jaxprs(v)


def convolutions(jaxpr) -> list:
  """Every conv_general_dilated equation of `jaxpr` and its sub-jaxprs."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      found.append(eqn)
    for value in eqn.params.values():
      for sub in _sub_jaxprs(value):
        found.extend(convolutions(sub))
  return found


def _signature(eqn) -> tuple:
  return (tuple(tuple(v.aval.shape) for v in eqn.invars), tuple(eqn.outvars[0].aval.shape),
          repr(sorted(eqn.params.items(), key=lambda kv: kv[0])))


def conv_records(forward_jaxpr, full_jaxpr) -> list[dict]:
  """One record per distinct convolution of the step (with its count):
  direction, shapes and the equation to time."""
  forward = {_signature(e) for e in convolutions(forward_jaxpr)}
  kernels = {tuple(e.invars[1].aval.shape) for e in convolutions(forward_jaxpr)}
  records = collections.OrderedDict()
  for eqn in convolutions(full_jaxpr):
    key = _signature(eqn)  # Shapes and parameters (dimension numbers, dilation).
    if key not in records:
      inputs = tuple(tuple(v.aval.shape) for v in eqn.invars)
      out = tuple(eqn.outvars[0].aval.shape)
      direction = ("forward" if key in forward else
                   "weight gradient" if out in kernels else "input gradient")
      records[key] = {"eqn": eqn, "count": 0, "direction": direction,
                      "inputs": inputs, "output": out}
    records[key]["count"] += 1
  return list(records.values())


def time_convolution(record: dict, library: str, repeats: int, calls: int) -> dict:
  """Seconds and FLOPs of one convolution alone under `library`."""
  eqn = record["eqn"]
  options = backends.library_options(library)
  fn = jax.jit(lambda *args: eqn.primitive.bind(*args, **eqn.params),
               compiler_options=options)
  rng = np.random.default_rng(0)
  args = [jnp.asarray(rng.standard_normal(v.aval.shape).astype(v.aval.dtype))
          for v in eqn.invars]
  compiled = fn.lower(*args).compile()
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, list) else analysis
  return {"seconds": best_seconds(lambda: compiled(*args), repeats, calls),
          "flops": float(analysis.get("flops", 0.0))}


def _forward_of(record: dict, forwards: list[dict]) -> dict | None:
  """The forward convolution whose gradient `record` is (matched by the
  shapes of x, the kernel and the output), or `record` itself if forward."""
  if record["direction"] == "forward":
    return record
  for f in forwards:
    (x, kernel), out = f["inputs"], f["output"]
    if record["direction"] == "weight gradient":
      if record["inputs"] == (x, out) and record["output"] == kernel:
        return f
    elif record["inputs"] == (out, kernel) and record["output"] == x:
      return f
  return None


def torch_convolution_seconds(record: dict, forward: dict, threads: int,
                              repeats: int, calls: int) -> float:
  """Seconds of PyTorch's op for `record` alone at `threads` threads: the
  forward conv (F.conv2d) or one output of its backward
  (aten.convolution_backward, input or weight gradient only), on the
  forward's shapes in NCHW, stride, dilation and groups; asymmetric "SAME"
  padding is applied to x first."""
  import torch  # pylint: disable=g-import-not-at-top
  params = forward["eqn"].params
  if (tuple(params["lhs_dilation"]) != (1, 1)
      or params["dimension_numbers"].lhs_spec != (0, 3, 1, 2)):
    raise ValueError(f"not an NHWC forward convolution: {params}")
  torch.set_num_threads(threads)
  (x_shape, k_shape), out_shape = forward["inputs"], forward["output"]
  rng = np.random.default_rng(0)
  x = torch.from_numpy(rng.standard_normal(x_shape, np.float32)).permute(0, 3, 1, 2)
  w = torch.from_numpy(rng.standard_normal(k_shape, np.float32)).permute(3, 2, 0, 1)
  g = torch.from_numpy(rng.standard_normal(out_shape, np.float32)).permute(0, 3, 1, 2)
  (top, bottom), (left, right) = params["padding"]
  if (top, left) != (bottom, right):
    x = torch.nn.functional.pad(x, (left, right, top, bottom))
    top = left = 0
  x, w, g = x.contiguous(), w.contiguous(), g.contiguous()
  stride, dilation = list(params["window_strides"]), list(params["rhs_dilation"])
  groups = params["feature_group_count"]
  if record["direction"] == "forward":
    fn = lambda: torch.nn.functional.conv2d(x, w, None, stride, [top, left],
                                            dilation, groups)
  else:
    mask = [record["direction"] == "input gradient",
            record["direction"] == "weight gradient", False]
    fn = lambda: torch.ops.aten.convolution_backward(
        g, x, w, None, stride, [top, left], dilation, False, [0, 0], groups, mask)
  with torch.no_grad():
    return best_seconds(fn, repeats, calls)


def _map_size(record: dict) -> int:
  """The spatial size of the convolution's largest map (H of an NHWC operand)."""
  return max(s[1] for s in (*record["inputs"], record["output"]) if len(s) == 4)


def torch_profile(torch_step, batch, steps: int) -> dict:
  """Seconds per step of PyTorch (1 thread), total and by op kind."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(1)
  _, step = torch_step()
  for _ in range(2):
    step(*batch)
  start = time.perf_counter()
  for _ in range(steps):
    step(*batch)
  total = (time.perf_counter() - start) / steps
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    for _ in range(steps):
      step(*batch)
  kinds = collections.defaultdict(float)
  for event in prof.key_averages():
    name = event.key
    if name.startswith("Optimizer.") or "adam" in name.lower() or "_foreach" in name:
      kind = "optimiser"
    elif "convolution_backward" in name:
      kind = "convolution backward (input + weight)"
    elif "conv" in name:
      kind = "convolution forward"
    elif "pool" in name:
      kind = "pooling"
    elif "upsample" in name or "interpolate" in name:
      kind = "upsampling"
    elif name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"):
      kind = "matmuls"
    else:
      kind = "elementwise and other"
    kinds[kind] += event.self_cpu_time_total / 1e6 / steps
  return {"step_s": total, "by_kind_s": dict(kinds),
          "profiled_s": sum(kinds.values())}


def profile(name: str, repeats: int, calls: int) -> dict:
  config, params, loss_fn, arrays, torch_step, torch_batch = setup(name)
  options = backends.compiler_options(config)
  library = backends.convolution_library(config)
  arrays = jax.device_put(arrays)
  rng = jax.random.PRNGKey(1)
  forward = jax.jit(lambda p, a: loss_fn(p, a, rng)[0], compiler_options=options)
  both = jax.jit(jax.value_and_grad(lambda p, a: loss_fn(p, a, rng)[0]),
                 compiler_options=options)
  f = best_seconds(lambda: forward(params, arrays), repeats, calls)
  fb = best_seconds(lambda: both(params, arrays), repeats, calls)
  optimizer = optax.adam(config.learning_rate)
  opt_state = optimizer.init(params)
  grads = both(params, arrays)[1]
  update = jax.jit(optimizer.update, compiler_options=options)
  adam = best_seconds(lambda: update(grads, opt_state, params), repeats, calls)
  _, run = speed_harness.jax_step_runner(config, jax.tree.map(jnp.copy, params),
                                         loss_fn, arrays)
  run(1)
  step = min(run(calls) for _ in range(repeats))
  records = conv_records(
      jax.make_jaxpr(lambda p, a: loss_fn(p, a, rng)[0])(params, arrays).jaxpr,
      jax.make_jaxpr(jax.value_and_grad(lambda p, a: loss_fn(p, a, rng)[0]))(
          params, arrays).jaxpr)
  convs = []
  forwards = [r for r in records if r["direction"] == "forward"]
  for record in records:
    times = {lib: time_convolution(record, lib, repeats, calls)
             for lib in ("ynnpack", "eigen")}
    seconds = {lib: t["seconds"] for lib, t in times.items()}
    forward_record = _forward_of(record, forwards)
    for threads in (1, 2):  # None: no forward conv of these shapes found.
      seconds[f"torch_{threads}"] = forward_record and torch_convolution_seconds(
          record, forward_record, threads, repeats, calls)
    convs.append({"direction": record["direction"], "count": record["count"],
                  "map_size": _map_size(record), "inputs": record["inputs"],
                  "output": record["output"], "flops": times["ynnpack"]["flops"],
                  "seconds": seconds})
  jax_seconds = lambda c: min(c["seconds"]["ynnpack"], c["seconds"]["eigen"])
  in_step = sum(c["count"] * c["seconds"][library] for c in convs)
  best = sum(c["count"] * jax_seconds(c) for c in convs)
  groups = collections.defaultdict(lambda: collections.defaultdict(float))
  for c in convs:
    g = groups[f"{c['direction']}, {c['map_size']}x{c['map_size']}"]
    g["count"] += c["count"]
    g["flops"] += c["count"] * c["flops"]
    for kind, seconds in c["seconds"].items():
      g[kind] += c["count"] * (seconds if seconds is not None else float("nan"))
  torch_figures = torch_profile(torch_step, torch_batch, max(calls, 2))
  return {"model": name, "image_size": config.image_size,
          "batch_size": config.batch_size, "library": library,
          "forward_s": f, "backward_s": fb - f, "optimiser_s": step - fb,
          "adam_alone_s": adam,
          "step_s": step, "convolutions_s": in_step,
          "rest_s": step - in_step, "floor_s": step - in_step + best,
          "convolution_flops": sum(c["count"] * c["flops"] for c in convs),
          "groups": {k: dict(v) for k, v in sorted(groups.items())},
          "convolutions": convs, "torch": torch_figures}


def print_profile(p: dict) -> None:
  ms = lambda s: f"{1e3 * s:,.2f}"
  print(f"\n{p['model']} ({p['image_size']}x{p['image_size']}, batch "
        f"{p['batch_size']}, convolutions on {p['library']}): step {ms(p['step_s'])} ms "
        f"= forward {ms(p['forward_s'])} + backward {ms(p['backward_s'])} + "
        f"optimiser {ms(p['optimiser_s'])} (Adam alone {ms(p['adam_alone_s'])}); "
        f"convolutions alone "
        f"{ms(p['convolutions_s'])} ms ({p['convolution_flops'] / 1e9:.2f} GFLOP), "
        f"the rest {ms(p['rest_s'])} ms; floor {ms(p['floor_s'])} ms; PyTorch "
        f"(1 thread) {ms(p['torch']['step_s'])} ms")
  print("| convolutions | count | GFLOP | YNNPACK ms | Eigen ms | GFLOP/s (faster) "
        "| PyTorch 1 thread ms | PyTorch 2 threads ms | JAX faster / PyTorch 2 |\n"
        "|---|---|---|---|---|---|---|---|---|")
  for name, g in p["groups"].items():
    faster = min(g["ynnpack"], g["eigen"])
    print(f"| {name} | {int(g['count'])} | {g['flops'] / 1e9:.3f} | {ms(g['ynnpack'])} | "
          f"{ms(g['eigen'])} | {g['flops'] / faster / 1e9:.1f} | "
          f"{ms(g['torch_1'])} | {ms(g['torch_2'])} | {faster / g['torch_2']:.2f} |")
  print("| PyTorch op kind | ms/step |\n|---|---|")
  for kind, s in sorted(p["torch"]["by_kind_s"].items(), key=lambda kv: -kv[1]):
    print(f"| {kind} | {ms(s)} |")


def main(argv):
  del argv
  if len(_MODELS.value) > 1:  # One process per model (see the flags).
    for name in _MODELS.value:
      subprocess.run([sys.executable, "-m", "benchmarks.profile_step",
                      f"--profile_models={name}", f"--profile_repeats={_REPEATS.value}",
                      f"--profile_calls={_CALLS.value}"]
                     + ([f"--profile_json={_JSON.value}"] if _JSON.value else []),
                     check=True)
    return
  (name,) = _MODELS.value
  figures = speed_harness.machine_record(_JSON.value, True)
  info, start = speed_harness.run_info(), time.time()
  calls = 1 if name in ("prob_unet_lidc", "segmentation_cub") else _CALLS.value
  result = speed_harness.finished({**info, **profile(name, _REPEATS.value, calls)}, start)
  figures[name] = result
  print_profile(result)
  speed_harness.write_json(_JSON.value, figures)


if __name__ == "__main__":
  app.run(main)
