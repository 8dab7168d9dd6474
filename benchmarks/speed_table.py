"""The speed page's table (docs/speed.md): every example's training speed,
JAX at the library's default settings beside its PyTorch peer at 1 and 2
threads, measured on this machine by one command.

  pip install torch==2.13.0   # benchmark only; not a dependency of cvae_jax
  python -m benchmarks.speed_table            # ~25 min on 2 cores
  python -m benchmarks.speed_table --quick    # small configs, fewer steps
  python -m benchmarks.speed_table --from_json=docs/speed_table.json  # re-render

Each part runs as its own process (a fresh XLA backend and torch thread
pool): the label CVAE's reference epoch (`mnist_label_speed --epoch_only`)
against `pytorch_reference`, goal 4x; the train steps and evaluations of
`segmentation_speed`, `prob_unet_speed` and `bbox_speed`, goal 1.25x. Ratio
= PyTorch's best time / JAX's (above 1: JAX is faster). Writes --output and
the parts' figures as JSON beside it.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import flags

from benchmarks import harness

PUBLISHED = "docs/speed_table.md"
QUICK_DIR = "workdirs/speed_table/quick"
_OUTPUT = flags.DEFINE_string(
    "output", None, f"The Markdown table; default {PUBLISHED}, or "
    f"{QUICK_DIR}/speed_table.md with --quick.")
_QUICK = flags.DEFINE_bool("quick", False, "Small configs, few steps: checks the script.")
_FROM_JSON = flags.DEFINE_string(
    "from_json", None, "Measure nothing: rewrite --output (and its JSON) from "
    "the JSON a finished run wrote.")

GOALS = {"label": 4.0, "conv": 1.25}


def measure(scratch: Path, quick: bool) -> dict:
  """Runs every part, each its own process; {part: its JSON}."""
  configs = lambda large, steps: (["--configs=offline", "--steps=3"] if quick else
                                  [f"--configs=offline,{large}", f"--steps={steps}"])
  commands = {
      "label": ["mnist_label_speed", "--epoch_only"],
      **{f"label_torch_{threads}": ["pytorch_reference", f"--epochs={2 if quick else 3}",
                                    f"--threads={threads}"] for threads in (1, 2)},
      "segmentation": ["segmentation_speed", f"--repeats={2 if quick else 3}",
                       *configs("cub", "10,1")],
      "prob_unet": ["prob_unet_speed", "--repeats=2", *configs("lidc", "10,2")],
      "bbox": ["bbox_speed", "--repeats=3", f"--steps={10 if quick else 50}"]}
  parts = {}
  for part, (module, *args) in commands.items():
    path = scratch / f"{part}.json"
    command = [sys.executable, "-m", f"benchmarks.{module}", *args, f"--json={path}"]
    print("+", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)
    parts[part] = json.loads(path.read_text())
  return parts


def rows(parts: dict) -> list[dict]:
  """A record per example and config: seconds of each runner, ratio, goal."""
  records = [{"example": "label CVAE", "config": "reference epoch (batch 20, 3000 steps)",
              "unit": "s/epoch", "jax": parts["label"]["reference_epoch_s"],
              "torch_1": parts["label_torch_1"]["epoch_s"],
              "torch_2": parts["label_torch_2"]["epoch_s"], "goal": GOALS["label"]}]
  for part, example in {"segmentation": "segmentation CVAE",
                        "prob_unet": "Probabilistic U-Net", "bbox": "box CVAE"}.items():
    for config, result in parts[part].items():
      if isinstance(result, dict) and "ms_per_step" in result:
        ms, size = result["ms_per_step"], result["image_size"]
        records.append({
            "example": example, "unit": "ms/step", "goal": GOALS["conv"],
            "config": f"{config}, {size}x{size}, batch {result['batch_size']}",
            "jax": ms["jax"] / 1e3, "torch_1": ms["torch_1_threads"] / 1e3,
            "torch_2": ms["torch_2_threads"] / 1e3,
            "load_average": [result[f"load_average_{w}"][0] for w in ("before", "after")]})
  return [{**r, "ratio": min(r["torch_1"], r["torch_2"]) / r["jax"]} for r in records]


# The evaluations each part times: {part: (example, {key: what it computes})}.
EVALUATIONS = {
    "prob_unet": ("Probabilistic U-Net", {
        "ged": "z ~ p(z|x) -> masks -> GED",
        "importance_sampled_nll": "z ~ q(z|x,y_g) -> IS -log p(y_g|x), 4 graders"}),
    "segmentation": ("segmentation CVAE", {
        "best_of_iou": "z ~ p(z|x) -> masks -> best-of-S IoU",
        "importance_sampled_nll": "z ~ q(z|x,y) -> IS -log p(y|x)"})}


def evaluation_rows(parts: dict) -> list[dict]:
  """Evaluation throughput (EVALUATIONS) in samples/s, where a part has it."""
  records = []
  for part, (example, whats) in EVALUATIONS.items():
    for config, result in parts[part].items():
      e = result.get("evaluation") if isinstance(result, dict) else None
      for key, what in whats.items() if e else ():
        rate = {k: v * e["samples_per_image"] for k, v in e[key]["images_per_s"].items()}
        records.append({
            "example": example, "what": what,
            "config": f"{config}, {result['image_size']}x{result['image_size']}",
            "images": e["images"], "samples": e["samples_per_image"],
            "jax": rate["jax"], "torch_1": rate["torch_1_threads"],
            "torch_2": rate["torch_2_threads"],
            "ratio": rate["jax"] / max(rate["torch_1_threads"], rate["torch_2_threads"])})
  return records


def markdown(records: list[dict], evaluations: list[dict], info: dict) -> str:
  text = harness.markdown(
      ["example", "config", "JAX (default settings)", "PyTorch, 1 thread",
       "PyTorch, 2 threads", "PyTorch's best / JAX", "goal", "reached"],
      [[r["example"], r["config"], *(f"{r[k]:.2f} s" if r["unit"] == "s/epoch"
                                     else f"{1e3 * r[k]:,.1f} ms"
                                     for k in ("jax", "torch_1", "torch_2")),
        f"{r['ratio']:.2f}x", f"{r['goal']:.2f}x", "yes" if r["ratio"] >= r["goal"]
        else "no"] for r in records])
  if evaluations:  # A bare | in `what` would end its cell.
    text += "\n" + harness.markdown(
        ["evaluation", "config", "JAX samples/s", "PyTorch, 1 thread",
         "PyTorch, 2 threads", "JAX / PyTorch's best"],
        [[f"{r['example']}: {r['what']}, {r['samples']} samples x {r['images']} "
          "images".replace("|", "\\|"), r["config"],
          *(f"{r[k]:,.0f}" for k in ("jax", "torch_1", "torch_2")),
          f"{r['ratio']:.2f}x"] for r in evaluations])
  return (text + f"\n{info['date']}, jax {info['jax']}, torch "
          f"{info['torch']}, {info['cpu_count']} cores, load average "
          f"{info['load_before']:.1f} before, {info['load_after']:.1f} after; "
          f"{info['wall_minutes']:.1f} min.\n")


def output_path() -> Path:
  """--output, else the published table (a --quick run's goes elsewhere)."""
  return harness.output_path(_OUTPUT.value, PUBLISHED, _QUICK.value, QUICK_DIR)


def main(argv):
  del argv
  output = output_path()
  output.parent.mkdir(parents=True, exist_ok=True)
  if _FROM_JSON.value:  # Re-render a finished run.
    finished = json.loads(Path(_FROM_JSON.value).read_text())
    parts, info = finished["parts"], finished["info"]
  else:
    start, load_before = time.time(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
      parts = measure(Path(scratch), _QUICK.value)
    import jax  # pylint: disable=g-import-not-at-top
    import torch  # pylint: disable=g-import-not-at-top
    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "jax": jax.__version__,
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "load_before": load_before, "load_after": os.getloadavg()[0],
            "wall_minutes": (time.time() - start) / 60, "quick": _QUICK.value}
  records, evaluations = rows(parts), evaluation_rows(parts)
  output.write_text(text := markdown(records, evaluations, info))
  output.with_suffix(".json").write_text(json.dumps(
      {"info": info, "rows": records, "evaluation_rows": evaluations,
       "parts": parts}, indent=2) + "\n")
  print(text)


if __name__ == "__main__":
  harness.run(main)
