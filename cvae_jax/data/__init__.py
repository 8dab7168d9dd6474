"""TFDS input pipelines and the offline sets built from real MNIST."""

__all__ = ["augmentation", "lidc", "lidc_hdf5", "lidc_png", "mnist",
           "mnist_ambiguous", "mnist_boxes", "mnist_segmentation",
           "offline_mnist", "quadrants", "splits", "tf_import", "tfds_boxes",
           "tfds_segmentation", "toy_mixture"]
