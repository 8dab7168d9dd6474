"""The PyTorch reference CVAE, timed on the same data in the same process
layout, so that the speed ratio to cvae_jax is measured on one machine.

  pip install torch   # benchmark only; not a dependency of cvae_jax
  python -m benchmarks.pytorch_reference [--epochs=2] [--threads=2] [--json=PATH]

Same model (794-200-(10,10), 20-200-784), loss (summed BCE + KLD), Adam
1e-3, batch 20 and data (TFDS MNIST) as the reference describes. Prints the
steady epoch's seconds and the test loss in the reference's unit.
"""

import time

from absl import flags
import numpy as np

from benchmarks import harness, speed_harness
from cvae_jax.data import mnist

_DATA_DIR = flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "TFDS data_dir.")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Epochs to time.")
_SEED = flags.DEFINE_integer("seed", 0, "torch.manual_seed.")
_THREADS = flags.DEFINE_integer("threads", 0, "torch.set_num_threads; 0: torch's default.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures here.")


def main(argv):
  del argv
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  class CVAE(nn.Module):

    def __init__(self):
      super().__init__()
      self.fc1 = nn.Linear(794, 200)
      self.fc21, self.fc22 = nn.Linear(200, 10), nn.Linear(200, 10)
      self.fc3, self.fc4 = nn.Linear(20, 200), nn.Linear(200, 784)

    def forward(self, x, c):
      h = F.relu(self.fc1(torch.cat([x, c], 1)))
      mu, logvar = self.fc21(h), self.fc22(h)
      z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
      recon = torch.sigmoid(self.fc4(F.relu(self.fc3(torch.cat([z, c], 1)))))
      return recon, mu, logvar

  def loss_terms(recon, x, mu, logvar):
    bce = F.binary_cross_entropy(recon, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce, kld

  torch.manual_seed(_SEED.value)
  if _THREADS.value:
    torch.set_num_threads(_THREADS.value)
  mnist.prepare_mnist(_DATA_DIR.value)
  train = mnist.load_mnist_arrays(_DATA_DIR.value, "train")
  test = mnist.load_mnist_arrays(_DATA_DIR.value, "test")
  x_train = torch.from_numpy(train["target"])
  c_train = F.one_hot(torch.from_numpy(train["condition"]).long(), 10).float()
  model = CVAE()
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  batch = 20
  epoch_seconds = []
  for _ in range(_EPOCHS.value):
    start = time.perf_counter()
    model.train()
    order = torch.randperm(len(x_train))
    for i in range(0, len(order) - batch + 1, batch):
      idx = order[i:i + batch]
      optimizer.zero_grad()
      recon, mu, logvar = model(x_train[idx], c_train[idx])
      bce, kld = loss_terms(recon, x_train[idx], mu, logvar)
      (bce + kld).backward()
      optimizer.step()
    epoch_seconds.append(time.perf_counter() - start)

  model.eval()
  x_test = torch.from_numpy(test["target"])
  c_test = F.one_hot(torch.from_numpy(test["condition"]).long(), 10).float()
  with torch.no_grad():
    losses = [sum(loss_terms(*((r, x_test[i:i + batch], m, l))))
              .item() for i in range(0, len(x_test), batch)
              for r, m, l in [model(x_test[i:i + batch], c_test[i:i + batch])]]
  steady = min(epoch_seconds[1:]) if len(epoch_seconds) > 1 else epoch_seconds[0]
  print(f"| pytorch reference | torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads |\n"
        f"| epoch (batch 20, 3000 steps) | {steady:.3f} s |\n"
        f"| test loss after {_EPOCHS.value} epochs (reference unit) | "
        f"{np.mean(losses):.4f} |")
  speed_harness.write_json(_JSON.value, {
      "torch": torch.__version__, "threads": torch.get_num_threads(), "epoch_s": steady,
      "epoch_seconds": epoch_seconds, "test_loss": float(np.mean(losses))})


if __name__ == "__main__":
  harness.run(main)
