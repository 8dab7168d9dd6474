"""The speed page's table (docs/speed.md): every example's training speed,
JAX at the library's default settings beside its PyTorch peer at 1 and 2
threads, measured on this machine by one command.

  pip install torch==2.13.0   # benchmark only; not a dependency of cvae_jax
  python -m benchmarks.speed_table            # ~25 min on 2 cores
  python -m benchmarks.speed_table --quick    # 32x32 / 64x64 configs, fewer steps
  python -m benchmarks.speed_table --from_json=docs/speed_table.json  # re-render

Rows (each part runs as its own process, so every one starts a fresh XLA
backend and torch thread pool, one after another):
  * label CVAE: the reference config's epoch (batch 20, 3000 steps,
    steady state), `benchmarks.mnist_label_speed --epoch_only` against the
    seed's PyTorch model (`benchmarks.pytorch_reference`), goal 4x;
  * segmentation CVAE (offline 32x32, CUB 128x128), Probabilistic U-Net
    (offline 32x32, LIDC 128x128), box CVAE (64x64): the train step
    (`segmentation_speed`, `prob_unet_speed`, `bbox_speed`: equal parameter
    counts and per-image losses checked there), goal 1.25x;
  * evaluation throughput (samples/s, S = 100 per image) of the Prob U-Net's
    GED and the segmentation CVAE's best-of-S IoU and importance-sampled
    NLL, measured by the same parts.
Ratio = PyTorch's best time / JAX's (above 1: JAX is faster). Writes
--output (docs/speed_table.md) and the parts' figures as JSON beside it.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

_OUTPUT = flags.DEFINE_string("output", "docs/speed_table.md", "The Markdown table.")
_QUICK = flags.DEFINE_bool("quick", False, "Small configs, few steps: checks the script.")
_FROM_JSON = flags.DEFINE_string(
    "from_json", None, "Measure nothing: rewrite --output (and its JSON) from "
    "the JSON a finished run wrote.")

GOALS = {"label": 4.0, "conv": 1.25}


def _run(module: str, *args: str) -> None:
  command = [sys.executable, "-m", f"benchmarks.{module}", *args]
  print("+", " ".join(command[1:]), flush=True)
  subprocess.run(command, check=True)


def _load(path: Path) -> dict:
  return json.loads(path.read_text())


def measure(scratch: Path, quick: bool) -> dict:
  """Runs every part; {part: its JSON}."""
  parts = {}
  _run("mnist_label_speed", "--epoch_only", f"--json={scratch / 'label.json'}")
  parts["label"] = _load(scratch / "label.json")
  for threads in (1, 2):
    path = scratch / f"label_torch_{threads}.json"
    _run("pytorch_reference", f"--epochs={2 if quick else 3}", f"--threads={threads}",
         f"--json={path}")
    parts[f"label_torch_{threads}"] = _load(path)
  segmentation = ["offline"] if quick else ["offline", "cub"]
  _run("segmentation_speed", f"--configs={','.join(segmentation)}",
       f"--steps={'3' if quick else '10,1'}", "--repeats=2" if quick else "--repeats=3",
       "--jax_variants=", "--torch_threads=1,2", "--nolayer_breakdown",
       f"--json={scratch / 'segmentation.json'}")
  parts["segmentation"] = _load(scratch / "segmentation.json")
  prob_unet = ["offline"] if quick else ["offline", "lidc"]
  _run("prob_unet_speed", f"--configs={','.join(prob_unet)}",
       f"--steps={'3' if quick else '10,2'}", "--repeats=2",
       f"--json={scratch / 'prob_unet.json'}")
  parts["prob_unet"] = _load(scratch / "prob_unet.json")
  _run("bbox_speed", f"--steps={10 if quick else 50}", "--repeats=3",
       f"--json={scratch / 'bbox.json'}")
  parts["bbox"] = _load(scratch / "bbox.json")
  return parts


def rows(parts: dict) -> list[dict]:
  """One record per example and config: seconds (JAX, PyTorch 1 and 2
  threads), the ratio and the goal."""
  label = parts["label"]
  records = [{"example": "label CVAE", "config": "reference epoch (batch 20, 3000 steps)",
              "unit": "s/epoch", "jax": label["reference_epoch_s"],
              "torch_1": parts["label_torch_1"]["epoch_s"],
              "torch_2": parts["label_torch_2"]["epoch_s"], "goal": GOALS["label"]}]
  names = {"segmentation": "segmentation CVAE", "prob_unet": "Probabilistic U-Net",
           "bbox": "box CVAE"}
  for part, example in names.items():
    for config, result in parts[part].items():
      if not isinstance(result, dict) or "ms_per_step" not in result:
        continue
      ms = result["ms_per_step"]
      size = result["image_size"]
      records.append({"example": example,
                      "config": f"{config}, {size}x{size}, batch {result['batch_size']}",
                      "unit": "ms/step", "jax": ms["jax"] / 1e3,
                      "torch_1": ms["torch_1_threads"] / 1e3,
                      "torch_2": ms["torch_2_threads"] / 1e3,
                      "goal": GOALS["conv"],
                      "load_average": [result["load_average_before"][0],
                                       result["load_average_after"][0]]})
  for r in records:
    r["ratio"] = min(r["torch_1"], r["torch_2"]) / r["jax"]
  return records


# The evaluations each part times: {part: (example, {key: what it computes})}.
EVALUATIONS = {
    "prob_unet": ("Probabilistic U-Net", {
        "ged": "z ~ p(z|x) -> masks -> GED",
        "importance_sampled_nll": "z ~ q(z|x,y_g) -> IS -log p(y_g|x), 4 graders"}),
    "segmentation": ("segmentation CVAE", {
        "best_of_iou": "z ~ p(z|x) -> masks -> best-of-S IoU",
        "importance_sampled_nll": "z ~ q(z|x,y) -> IS -log p(y|x)"})}


def evaluation_rows(parts: dict) -> list[dict]:
  """Evaluation throughput where a part measured it (EVALUATIONS), in
  samples/s (S draws per image)."""
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


def _shown(seconds: float, unit: str) -> str:
  return f"{seconds:.2f} s" if unit == "s/epoch" else f"{1e3 * seconds:,.1f} ms"


def markdown(records: list[dict], evaluations: list[dict], info: dict) -> str:
  lines = ["| example | config | JAX (default settings) | PyTorch, 1 thread | "
           "PyTorch, 2 threads | PyTorch's best / JAX | goal | reached |",
           "|---|---|---|---|---|---|---|---|"]
  for r in records:
    lines.append(
        f"| {r['example']} | {r['config']} | {_shown(r['jax'], r['unit'])} | "
        f"{_shown(r['torch_1'], r['unit'])} | {_shown(r['torch_2'], r['unit'])} | "
        f"{r['ratio']:.2f}x | {r['goal']:.2f}x | "
        f"{'yes' if r['ratio'] >= r['goal'] else 'no'} |")
  if evaluations:
    lines += ["", "| evaluation | config | JAX samples/s | PyTorch, 1 thread | "
              "PyTorch, 2 threads | JAX / PyTorch's best |", "|---|---|---|---|---|---|"]
    for r in evaluations:
      what = r["what"].replace("|", "\\|")  # A bare | would end the cell.
      lines.append(f"| {r['example']}: {what}, {r['samples']} samples x "
                   f"{r['images']} images | {r['config']} | {r['jax']:,.0f} | "
                   f"{r['torch_1']:,.0f} | {r['torch_2']:,.0f} | {r['ratio']:.2f}x |")
  return ("\n".join(lines) + f"\n\n{info['date']}, jax {info['jax']}, torch "
          f"{info['torch']}, {info['cpu_count']} cores, load average "
          f"{info['load_before']:.1f} before, {info['load_after']:.1f} after; "
          f"{info['wall_minutes']:.1f} min.\n")


def main(argv):
  del argv
  output = Path(_OUTPUT.value)
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
  output.write_text(markdown(records, evaluations, info))
  output.with_suffix(".json").write_text(json.dumps(
      {"info": info, "rows": records, "evaluation_rows": evaluations,
       "parts": parts}, indent=2) + "\n")
  print(markdown(records, evaluations, info))


if __name__ == "__main__":
  app.run(main)
