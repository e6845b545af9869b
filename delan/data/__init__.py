"""Trajectory data: the HDF5 schema, loaders for recorded logs, derivative estimation, generation.

>>> from delan.data import load_dataset, save_dataset
>>> ds = load_dataset("datasets/two_link_characters.h5")
>>> held_out, rest = ds.split(["a", "b"])   # (the named trajectories, all others)
>>> arrays = rest.concatenate()              # q, qd, qdd, tau (N, n) + ground truth
>>> ds.joint_types, ds.revolute_mask()      # ['revolute', 'revolute'], [True, True] (None: not recorded)
>>> parse_joint_types("R,P", 2)             # ['revolute', 'prismatic']
"""

from delan.data.derivatives import estimate_derivatives
from delan.data.logs import load_log
from delan.data.schema import JOINT_TYPES, TRUTH, Dataset, Trajectory, load_dataset, parse_joint_types, save_dataset

__all__ = [
    "Trajectory",
    "Dataset",
    "load_dataset",
    "save_dataset",
    "load_log",
    "estimate_derivatives",
    "TRUTH",
    "JOINT_TYPES",
    "parse_joint_types",
]
