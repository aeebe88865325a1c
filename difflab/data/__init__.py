"""Data: toy sets with exact densities, scikit-learn digits, Fashion-MNIST, image folders; all in [-1, 1]."""

from .images import ImageData, TensorData, digits, fashion_mnist, image_folder, to_uint8, to_unit
from .toy import TOY_SETS, Checkerboard, CurveDensity, toy, toy_density

__all__ = ["ImageData", "TensorData", "digits", "fashion_mnist", "image_folder", "to_uint8", "to_unit", "TOY_SETS", "toy",
           "toy_density", "CurveDensity", "Checkerboard"]
