"""Data: toy sets with exact densities, scikit-learn digits, Fashion-MNIST, image folders (all in [-1, 1]); categorical
data (text, quantized images and points) as integer tokens in `categorical`."""

from . import categorical

from .categorical import TokenData
from .images import (ImageData, LowResImages, PairedData, TensorData, digits, downsample, fashion_mnist, image_folder, read_image,
                     to_uint8, to_unit, upsample)
from .toy import TOY_SETS, Checkerboard, CurveDensity, toy, toy_density

__all__ = ["categorical", "TokenData", "ImageData", "LowResImages", "downsample", "upsample", "TensorData", "digits", "fashion_mnist", "image_folder", "read_image", "PairedData", "to_uint8", "to_unit", "TOY_SETS", "toy",
           "toy_density", "CurveDensity", "Checkerboard"]
