"""MNIST quadrant completion, closer to Sohn et al. (2015), section 5.1.

Differences from the Pyro protocol (train/configs/mnist_quadrant.py):
binarised pixels (a fixed threshold at 0.5 by default; "stochastic" draws
one fixed binarised copy instead) and a generation net p(y | x, z) that sees
the given quadrants, with the baseline's guess filling their gaps, as in the
paper's recurrent connection. The quadrant order is the one of the paper's
Figure 3 as the Pyro example reproduces it. Net sizes stay at the Pyro
example's.
"""

from train.configs import mnist_quadrant


def get_config():
  config = mnist_quadrant.get_config()
  config.protocol = "sohn"
  config.binarisation = "threshold"
  config.network.generation_sees_condition = True
  config.network.baseline_to_generation = True
  return config
