"""A run's task: a dataset loaded, split and with its features prepared, from a :class:`DataConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch_geometric.data import Data

from vqgraph import distributed
from vqgraph.data.datasets import load_dataset
from vqgraph.data.graph import FEATURE_NORMS, FeatureTransform
from vqgraph.data.splits import NodeSplit, Setting, make_split
from vqgraph.utils.settings import check_fields, choice, ranged


VAL_SPLITS = ("shared", "halves")


@dataclass(frozen=True)
class DataConfig:
    """How a graph's features are prepared and how it is split."""

    feature_norm: str = choice("none", FEATURE_NORMS)  # none | row | standard (row: Cora and Citeseer presets; see docs/results.md)
    test_ind_ratio: float = ranged(0.2, gt=0, lt=1)  # fraction of test nodes hidden in the inductive setting
    train_per_class: int = ranged(20, ge=1)  # CPF split (datasets without fixed splits)
    val_per_class: int = ranged(30, ge=1)
    val_split: str = choice("shared", VAL_SPLITS)  # shared | halves: the teacher selects on one half of validation, the student on the other

    def __post_init__(self):
        check_fields(self)


class Task(NamedTuple):
    """``data`` with prepared features, its ``split`` and the fitted feature ``transform``
    (serving applies it to new nodes)."""

    data: Data
    split: NodeSplit
    transform: FeatureTransform


def prepare_task(dataset: str, setting: str, seed: int, config: DataConfig = DataConfig(), root=None,
                 download: bool = False) -> Task:
    """Load ``dataset`` (a name or a CPF ``.npz`` path; ``root``: the data root; ``download``: fetch
    it into the first data root when missing, see :func:`load_dataset`; under torchrun rank 0
    fetches and the other ranks wait, then read), split it for
    ``setting`` with ``seed`` (the split depends on labels only; ``config.val_split="halves"``
    sets half of validation apart for the teacher) and normalise its features with
    statistics (if any) of the observed nodes only: hidden test nodes never shape the inputs."""
    if download and distributed.world().world_size > 1:  # one process fetches, the others then read
        failure = None
        if distributed.world().is_main:
            try:
                load_dataset(dataset, root=root, download=True, seed=seed)
            except Exception as err:  # every rank must reach the barrier; rank 0 raises after it
                failure = err
        distributed.barrier()
        if failure is not None:
            raise failure
        download = False
    data = load_dataset(dataset, root=root, download=download, seed=seed)
    split = make_split(
        data,
        seed=seed,
        setting=Setting.parse(setting),
        test_ind_ratio=config.test_ind_ratio,
        train_per_class=config.train_per_class,
        val_per_class=config.val_per_class,
    )
    if config.val_split == "halves":
        split = split.halve_validation(data.y)
    transform = FeatureTransform.fit(data.x, config.feature_norm, fit_idx=split.observed_idx)
    data = data.clone()
    data.x = transform(data.x)
    return Task(data, split, transform)
