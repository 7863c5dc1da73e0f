"""One split object for both evaluation settings.

A :class:`NodeSplit` holds global node ids. Transductive: ``train``/``val``/``test`` and the whole
graph is observed. Inductive (:meth:`NodeSplit.inductive`): a fraction of the test nodes is
hidden with all their edges; ``test_tran`` are the observed test nodes, ``test_ind`` the hidden
ones, and :meth:`NodeSplit.observed_graph` is the graph without them (rows relabelled, their
global ids kept in ``n_id``). Code that trains or evaluates asks the split, never the setting.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Dict, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgraph.data.graph import ensure_graph
from vqgraph.errors import SplitError


class Setting(str, Enum):
    TRANSDUCTIVE = "transductive"
    INDUCTIVE = "inductive"

    @classmethod
    def parse(cls, value) -> "Setting":
        try:
            return cls(value)
        except ValueError:
            raise SplitError(f"unknown setting {value!r}; choose from {[s.value for s in cls]}") from None


def _as_idx(idx, name: str, num_nodes: int) -> Tensor:
    idx = torch.as_tensor(idx, dtype=torch.long).view(-1)
    if idx.numel() == 0:
        raise SplitError(f"split {name!r} is empty")
    if int(idx.min()) < 0 or int(idx.max()) >= num_nodes:
        raise SplitError(f"split {name!r} has node ids outside [0, {num_nodes})")
    if torch.unique(idx).numel() != idx.numel():
        raise SplitError(f"split {name!r} lists a node more than once")
    return idx


@dataclass(frozen=True, eq=False)
class NodeSplit:
    """Train/validation/test node ids (global), and the hidden test nodes of the inductive setting.

    Attributes:
        num_nodes: N of the full graph.
        train_idx, val_idx, test_idx: global ids; ``test_idx`` holds every test node.
        test_ind_idx: the hidden test nodes (empty in the transductive setting).
        seed: the seed the split was drawn with (or the index of a fixed split).
        teacher_val_idx: ``None`` (validation shared), or the part of ``val_idx`` the teacher is
            selected and calibrated on; the student is then selected on the rest
            (:meth:`halve_validation`, :meth:`for_teacher`, :meth:`for_student`).
        test_ind_ratio: the share of test nodes hidden (:meth:`inductive` records the ratio it was
            asked for; given hidden nodes without it, their share of the test nodes): the weight
            of ``test_ind`` in the production score. ``None`` in the transductive setting.
    """

    num_nodes: int
    train_idx: Tensor
    val_idx: Tensor
    test_idx: Tensor
    test_ind_idx: Tensor
    seed: int = 0
    teacher_val_idx: Optional[Tensor] = None
    test_ind_ratio: Optional[float] = None

    def __post_init__(self):
        for key in ("train_idx", "val_idx", "test_idx"):
            object.__setattr__(self, key, _as_idx(getattr(self, key), key[:-4], self.num_nodes))
        object.__setattr__(self, "test_ind_idx", torch.as_tensor(self.test_ind_idx, dtype=torch.long).view(-1))
        seen = torch.zeros(self.num_nodes, dtype=torch.long)
        for key in ("train_idx", "val_idx", "test_idx"):
            seen[getattr(self, key)] += 1
        if bool((seen > 1).any()):
            node = int((seen > 1).nonzero()[0, 0])
            raise SplitError(f"train, val and test must be disjoint; node {node} is in more than one")
        if self.test_ind_idx.numel():
            in_test = torch.zeros(self.num_nodes, dtype=torch.bool)
            in_test[self.test_idx] = True
            if not bool(in_test[self.test_ind_idx].all()):
                raise SplitError("hidden (test_ind) nodes must be test nodes")
            if self.test_ind_ratio is None:
                object.__setattr__(self, "test_ind_ratio", self.test_ind_idx.numel() / self.test_idx.numel())
        else:
            object.__setattr__(self, "test_ind_ratio", None)
        if self.teacher_val_idx is not None:
            own = _as_idx(self.teacher_val_idx, "teacher_val", self.num_nodes)
            object.__setattr__(self, "teacher_val_idx", own)
            if not bool(torch.isin(own, self.val_idx).all()) or own.numel() == self.val_idx.numel():
                raise SplitError("teacher_val must be a part of val, not all of it (the student selects on the rest)")

    # ---- views -------------------------------------------------------------------------------
    @property
    def setting(self) -> Setting:
        return Setting.INDUCTIVE if self.test_ind_idx.numel() else Setting.TRANSDUCTIVE

    @property
    def hidden_mask(self) -> Tensor:
        return self._mask(self.test_ind_idx)

    @property
    def train_mask(self) -> Tensor:
        """[N] bool: the labelled training nodes."""
        return self._mask(self.train_idx)

    def _mask(self, idx: Tensor) -> Tensor:
        mask = torch.zeros(self.num_nodes, dtype=torch.bool)
        mask[idx] = True
        return mask

    @property
    def observed_idx(self) -> Tensor:
        """Sorted global ids of the nodes the training graph contains."""
        return (~self.hidden_mask).nonzero().view(-1)

    @property
    def test_tran_idx(self) -> Tensor:
        return self.test_idx[~self.hidden_mask[self.test_idx]]

    def index_dict(self) -> Dict[str, Tensor]:
        """Evaluation sets by name: ``train/val/test`` (transductive) or ``train/val/test_tran/test_ind``."""
        out = {"train": self.train_idx, "val": self.val_idx}
        if self.setting is Setting.TRANSDUCTIVE:
            out["test"] = self.test_idx
        else:
            out["test_tran"] = self.test_tran_idx
            out["test_ind"] = self.test_ind_idx
        return out

    def sizes(self) -> Dict[str, int]:
        return {key: int(idx.numel()) for key, idx in self.index_dict().items()}

    def fingerprint(self) -> str:
        """A short hash of every index set, to check that saved artifacts match this split (the
        sets say everything: ``test_ind_ratio`` is not hashed)."""
        digest = hashlib.sha256(str(self.num_nodes).encode())
        sets = self.index_dict()
        if self.teacher_val_idx is not None:  # absent when shared: earlier fingerprints stay valid
            sets["teacher_val"] = self.teacher_val_idx
        for key, idx in sorted(sets.items()):
            digest.update(key.encode())
            digest.update(torch.sort(idx).values.numpy().tobytes())
        return digest.hexdigest()[:16]

    # ---- validation roles --------------------------------------------------------------------
    def halve_validation(self, y: Tensor, seed: Optional[int] = None) -> "NodeSplit":
        """This split with half of each class's validation nodes set apart for the teacher, drawn
        with ``seed`` (default: this split's seed, salted). Why: a teacher selected and calibrated
        on the validation nodes fits them better than others, so a student judged on the same
        nodes is judged on its teacher's selection (docs/results.md, "a bias of validation")."""
        seed = self.seed + 104729 if seed is None else seed  # salted: independent of the class draws
        gen = torch.Generator().manual_seed(int(seed))
        y = torch.as_tensor(y, dtype=torch.long)
        labels = y[self.val_idx]
        part = []
        for c in torch.unique(labels):
            nodes = self.val_idx[labels == c]
            part.append(nodes[torch.randperm(nodes.numel(), generator=gen)[: nodes.numel() // 2]])
        own = torch.sort(torch.cat(part)).values
        if own.numel() == 0:
            raise SplitError(f"halve_validation: {self.val_idx.numel()} validation node(s) leave the teacher none")
        return dataclasses.replace(self, teacher_val_idx=own)

    def for_teacher(self) -> "NodeSplit":
        """The split as the teacher sees it: its validation nodes are ``teacher_val_idx``."""
        return self if self.teacher_val_idx is None else self._with_val(self.teacher_val_idx)

    def for_student(self) -> "NodeSplit":
        """The split as the student is selected on: validation less the teacher's part."""
        if self.teacher_val_idx is None:
            return self
        return self._with_val(self.val_idx[~torch.isin(self.val_idx, self.teacher_val_idx)])

    def _with_val(self, val_idx: Tensor) -> "NodeSplit":
        return dataclasses.replace(self, val_idx=val_idx, teacher_val_idx=None)

    # ---- graphs ------------------------------------------------------------------------------
    def check_graph(self, data: Data) -> None:
        if data.num_nodes != self.num_nodes:
            raise SplitError(f"split was made for {self.num_nodes} nodes but the graph has {data.num_nodes}")

    def observed_graph(self, data: Data) -> Data:
        """The graph seen during training: hidden nodes and every edge touching them removed.

        Rows are relabelled to ``0..len(observed_idx)-1``; ``n_id`` holds their global ids.
        In the transductive setting this is the whole graph (a shallow copy with ``n_id``: the
        tensors are shared, not duplicated).
        """
        self.check_graph(data)
        if self.setting is Setting.TRANSDUCTIVE:
            out = copy.copy(data)
            out.n_id = torch.arange(data.num_nodes)
            return out
        observed = self.observed_idx
        out = data.subgraph(observed)
        out.n_id = observed
        return out

    def observed_edges(self, edge_index: Tensor) -> Tensor:
        """The edges training may see, by global id: inductively none that touches a hidden node
        (``edge_index`` itself transductively)."""
        if self.setting is Setting.TRANSDUCTIVE:
            return edge_index
        hidden = self.hidden_mask
        return edge_index[:, ~(hidden[edge_index[0]] | hidden[edge_index[1]])]

    def observed_rows(self, x: Tensor) -> Tensor:
        """The rows of ``x`` [N, ...] of the observed nodes (``x`` itself transductively, not a copy)."""
        return x if self.setting is Setting.TRANSDUCTIVE else x[self.observed_idx]

    def to_local(self, global_idx: Tensor) -> Tensor:
        """Map global ids to rows of :meth:`observed_graph`; raises if an id is hidden."""
        global_idx = torch.as_tensor(global_idx, dtype=torch.long)
        if self.setting is Setting.TRANSDUCTIVE:
            return global_idx
        local = torch.full((self.num_nodes,), -1, dtype=torch.long)
        observed = self.observed_idx
        local[observed] = torch.arange(observed.numel())
        out = local[global_idx]
        if bool((out < 0).any()):
            raise SplitError("to_local: some nodes are hidden (test_ind) and are not in the observed graph")
        return out

    # ---- settings ----------------------------------------------------------------------------
    def inductive(self, test_ind_ratio: float = 0.2, seed: Optional[int] = None) -> "NodeSplit":
        """Hide ``test_ind_ratio`` of the test nodes (drawn with ``seed``, default this split's)."""
        if not 0.0 < test_ind_ratio < 1.0:
            raise SplitError(f"test_ind_ratio must be in (0, 1), got {test_ind_ratio}")
        if self.test_ind_idx.numel():
            raise SplitError("this split is inductive already")
        seed = self.seed if seed is None else seed
        gen = torch.Generator().manual_seed(int(seed) + 7919)  # salted: independent of the class draws
        perm = self.test_idx[torch.randperm(self.test_idx.numel(), generator=gen)]
        num_hidden = int(round(test_ind_ratio * perm.numel()))
        if num_hidden == 0 or num_hidden == perm.numel():
            raise SplitError(
                f"test_ind_ratio={test_ind_ratio} of {perm.numel()} test nodes leaves an empty test_ind or test_tran"
            )
        return dataclasses.replace(self, test_ind_idx=torch.sort(perm[:num_hidden]).values,
                                   test_ind_ratio=float(test_ind_ratio))

    def to_setting(self, setting, test_ind_ratio: float = 0.2) -> "NodeSplit":
        return self.inductive(test_ind_ratio) if Setting.parse(setting) is Setting.INDUCTIVE else self


def graph_and_split(data: Data, split: NodeSplit, where: str) -> Data:
    """What every entry point that takes a graph and its split does first: the graph checked by
    :func:`~vqgraph.data.graph.ensure_graph`, ``split`` a :class:`NodeSplit` of its nodes.

    Raises:
        TypeError: ``split`` is not a :class:`NodeSplit` (a dict of index tensors, a mask).
        SplitError: it was made for a graph of another size.
    """
    data = ensure_graph(data, where)
    if not isinstance(split, NodeSplit):
        raise TypeError(f"{where}: split must be a vqgraph.NodeSplit (vqgraph.make_split(data, seed=...); your own "
                        "ids: NodeSplit(num_nodes, train_idx, val_idx, test_idx, test_ind_idx=torch.tensor([], "
                        f"dtype=torch.long))), got {type(split).__name__}")
    split.check_graph(data)
    return data


def cpf_split(y: Tensor, num_classes: int, seed: int = 0, train_per_class: int = 20, val_per_class: int = 30) -> NodeSplit:
    """The CPF/GLNN split: per class ``train_per_class`` train and ``val_per_class`` validation
    nodes drawn with ``seed``; every other node is a test node."""
    y = torch.as_tensor(y, dtype=torch.long)
    gen = torch.Generator().manual_seed(int(seed))
    train, val, test = [], [], []
    need = train_per_class + val_per_class
    for c in range(num_classes):
        nodes = (y == c).nonzero().view(-1)
        if nodes.numel() < need:
            raise SplitError(
                f"class {c} has {nodes.numel()} node(s) but the split needs {need} "
                f"({train_per_class} train + {val_per_class} val per class)"
            )
        nodes = nodes[torch.randperm(nodes.numel(), generator=gen)]
        train.append(nodes[:train_per_class])
        val.append(nodes[train_per_class:need])
        test.append(nodes[need:])
    sort = lambda parts: torch.sort(torch.cat(parts)).values  # noqa: E731
    return NodeSplit(y.numel(), sort(train), sort(val), sort(test), torch.empty(0, dtype=torch.long), int(seed))


def make_split(
    data: Data,
    seed: int = 0,
    setting="transductive",
    test_ind_ratio: float = 0.2,
    train_per_class: int = 20,
    val_per_class: int = 30,
) -> NodeSplit:
    """The split a dataset is evaluated with.

    Datasets with fixed splits (``train_mask`` [N, S]: OGB, heterophilic, PyG datasets that
    have masks) use split ``seed % S`` (of each mask: a single test mask serves every split);
    the others get :func:`cpf_split` drawn with ``seed``. ``setting="inductive"`` then hides
    ``test_ind_ratio`` of the test nodes. ``data``: a graph in canonical form
    (:func:`vqgraph.prepare_graph` makes one of any PyG ``Data``); ``num_classes`` may be absent.
    """
    data = ensure_graph(data, "make_split")
    if "train_mask" in data:
        masks = [data[key] for key in ("train_mask", "val_mask", "test_mask")]
        masks = [m.view(-1, 1) if m.dim() == 1 else m for m in masks]
        # split seed % S of each mask (WikiCS: 20 train and validation masks, one test mask)
        train, val, test = (m[:, int(seed) % m.size(1)].nonzero().view(-1) for m in masks)
        split = NodeSplit(data.num_nodes, train, val, test, torch.empty(0, dtype=torch.long), int(seed))
    else:
        split = cpf_split(data.y, data.num_classes, seed, train_per_class, val_per_class)
    return split.to_setting(setting, test_ind_ratio)
