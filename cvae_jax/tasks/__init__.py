"""One small module per example: wires a model, data and the generic trainer."""

__all__ = ["bbox", "mnist_label", "mnist_quadrant", "prob_unet", "segmentation",
           "toy_mixture"]
