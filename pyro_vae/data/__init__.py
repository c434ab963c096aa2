"""Data sets by name: real image sets (downloaded and checksum-checked) and synthetic ones.

>>> from pyro_vae.data import load_dataset
>>> data = load_dataset("digits", binarization="static", seed=1)
>>> data.train.shape
torch.Size([1500, 64])
"""

# The loader modules are imported for their side effect of registering themselves.
from . import binarized_mnist, digits, lgssm, mnist, quadrants, sequences, synthetic  # noqa: F401
from .dataset import Dataset
from .registry import DATASETS, data_root, load_dataset

__all__ = ["DATASETS", "Dataset", "data_root", "load_dataset"]
