"""Dataset registry, data-root resolution and :func:`load_dataset`.

A dataset name maps to a :class:`DatasetSpec` in one table (:data:`KNOWN_DATASETS`): where its
files may sit under the data root, where to download them, and which reader loads them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from torch_geometric.data import Data

from vqgraph.data.checksums import verify as verify_checksum
from vqgraph.data.cpf import load_cpf_npz
from vqgraph.data.heterophilic import load_heterophilic_npz
from vqgraph.data.leftovers import guarded
from vqgraph.data.ogb import download_ogb, load_ogb, ogb_dir_name, ogb_expected_files
from vqgraph.data.pyg import PREFIX as PYG_PREFIX, load_pyg
from vqgraph.data.synthetic import make_csbm
from vqgraph.errors import DatasetNotFoundError, UnknownDatasetError

DATA_ENV = "VQGRAPH_DATA"
DEFAULT_ROOT = "datasets"

PathLike = Union[str, os.PathLike]


def resolve_data_roots(root: Optional[PathLike] = None) -> List[Path]:
    """The data roots, searched in order: ``root`` if given, else ``$VQGRAPH_DATA``, else
    ``./datasets``. A string or the variable may list several folders separated by
    ``os.pathsep`` (``:`` on Linux), like ``PATH``: ``datasets:../shared/data`` reads a dataset
    from whichever holds it and downloads into the first. A ``pathlib.Path`` is one folder."""
    if isinstance(root, os.PathLike):
        return [Path(root).expanduser()]
    text = root if root is not None and str(root) != "" else os.environ.get(DATA_ENV, "") or DEFAULT_ROOT
    return [Path(part).expanduser() for part in str(text).split(os.pathsep) if part] or [Path(DEFAULT_ROOT)]


def resolve_data_root(root: Optional[PathLike] = None) -> Path:
    """The first data root of :func:`resolve_data_roots`: where downloads go."""
    return resolve_data_roots(root)[0]


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset's files may sit under the data root and how to read them.

    ``candidates`` are paths relative to the root, tried in order; the first that exists is
    read. ``url`` (if any) is downloaded to ``candidates[0]``.
    """

    name: str
    family: str  # "cpf", "heterophilic", "ogb", "synthetic"
    candidates: Tuple[str, ...] = ()
    url: Optional[str] = None
    aliases: Tuple[str, ...] = ()
    description: str = ""

    def locate(self, root: Path) -> Optional[Path]:
        for rel in self.candidates:
            if (root / rel).is_file():
                return root / rel
        return None

    def searched(self, root: Path) -> List[str]:
        return [str(root / rel) for rel in self.candidates]


_CPF_URL = "https://raw.githubusercontent.com/BUPT-GAMMA/CPF/master/data/npz/{}.npz"
_HETERO_URL = "https://raw.githubusercontent.com/yandex-research/heterophilous-graphs/main/data/{}.npz"


def _cpf(name: str, folder: str, stems: Tuple[str, ...], url_stem: str, aliases=(), description="") -> DatasetSpec:
    candidates = tuple(f"{folder}/{s}.npz" for s in stems) + tuple(f"{s}.npz" for s in stems)
    candidates += tuple(f"npz/{s}.npz" for s in stems)
    return DatasetSpec(name, "cpf", candidates, _CPF_URL.format(url_stem), aliases, description)


def _hetero(name: str, aliases=()) -> DatasetSpec:
    candidates = (f"{name}/{name}.npz", f"{name}.npz")
    return DatasetSpec(name, "heterophilic", candidates, _HETERO_URL.format(name), aliases, "Geom-GCN 10 splits")


def _ogb(name: str) -> DatasetSpec:
    # the edge file stands for the folder (all expected files are checked when loading); built
    # without ogb's metadata so that importing vqgraph does not import ogb
    candidates = (f"{ogb_dir_name(name)}/raw/edge.csv.gz",)
    return DatasetSpec(name, "ogb", candidates, "ogb", (name.replace("-", "_"),), "OGB")


KNOWN_DATASETS: Dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _cpf("cora", "cora", ("cora",), "cora", description="CPF, citation"),
        _cpf("citeseer", "citeseer", ("citeseer",), "citeseer", description="CPF, citation"),
        _cpf("pubmed", "pubmed", ("pubmed",), "pubmed", description="CPF, citation"),
        _cpf(
            "a-computer",
            "amazon_computers",
            ("amazon_computers", "amazon_electronics_computers"),
            "amazon_electronics_computers",
            aliases=("amazon-computers", "amazon_computers", "computers"),
            description="CPF, co-purchase",
        ),
        _cpf(
            "a-photo",
            "amazon_photo",
            ("amazon_photo", "amazon_electronics_photo"),
            "amazon_electronics_photo",
            aliases=("amazon-photo", "amazon_photo", "photo"),
            description="CPF, co-purchase",
        ),
        _ogb("ogbn-arxiv"),
        _ogb("ogbn-products"),
        _hetero("texas"),
        _hetero("cornell"),
        _hetero("wisconsin"),
        _hetero("actor", aliases=("film",)),
        _hetero("chameleon"),
        _hetero("squirrel"),
        DatasetSpec(
            "synthetic",
            "synthetic",
            aliases=("csbm",),
            description="seeded CSBM, 10k nodes, 5 classes, degree 10 (make_csbm for other sizes)",
        ),
    )
}

_ALIASES = {alias: spec.name for spec in KNOWN_DATASETS.values() for alias in (spec.name, *spec.aliases)}


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name`` (or of one of its aliases, case-insensitive)."""
    key = _ALIASES.get(name.lower())
    if key is None:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(KNOWN_DATASETS)} "
            f"(or pass the path of a CPF-format .npz file)"
        )
    return KNOWN_DATASETS[key]


def _download_file(url: str, dest: Path, timeout: float = 60.0, check=None) -> None:
    """Download ``url`` to ``dest`` through a temporary file, so that a failure leaves nothing:
    a cut connection, a body shorter than its announced length, or a file that ``check(path)``
    (for example a reader) rejects."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
            expected = response.headers.get("Content-Length")
            if expected is not None and out.tell() != int(expected):
                raise OSError(f"download cut off: {out.tell()} of {expected} bytes received")
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _not_found(spec: DatasetSpec, roots: List[Path], why: str = "") -> DatasetNotFoundError:
    expected = ogb_expected_files(spec.name) if spec.family == "ogb" else list(spec.candidates)
    searched = [path for root in roots for path in spec.searched(root)]
    where = f"data root {roots[0]}" if len(roots) == 1 else f"data roots {', '.join(map(str, roots))}"
    hint = (f" To fetch it from {spec.url} into {roots[0]}: download=True (command line: --download)."
            if spec.url else "")
    return DatasetNotFoundError(
        f"dataset {spec.name!r} not found under {where} "
        f"(resolved from: argument, else ${DATA_ENV}, else ./{DEFAULT_ROOT}). "
        f"Expected one of these files: {expected}; searched: {searched}." + (f" {why}" if why else hint)
    )


def _fetch(spec: DatasetSpec, roots: List[Path]) -> None:
    root = roots[0]
    try:
        if spec.family == "ogb":  # a failure removes the folders the attempt created (the root included)
            guarded(root / ogb_dir_name(spec.name), lambda: download_ogb(spec.name, root))
        else:
            reader = load_cpf_npz if spec.family == "cpf" else load_heterophilic_npz
            dest = root / spec.candidates[0]
            guarded(dest.parent, lambda: _download_file(spec.url, dest, check=lambda path: reader(path, spec.name)))
    except Exception as err:  # offline, HTTP error, cut off, not the expected file: all end the same way
        raise _not_found(spec, roots, f"Download from {spec.url} into {root} failed (nothing was kept): "
                                      f"{type(err).__name__}: {err}") from err


def _locate(spec: DatasetSpec, roots: List[Path]) -> Tuple[Path, Optional[Path]]:
    """The first root holding ``spec``'s files and the file found there (else the first root, None)."""
    for root in roots:
        found = spec.locate(root)
        if found is not None:
            return root, found
    return roots[0], None


def load_dataset(name: str, root: Optional[PathLike] = None, download: bool = False, seed: int = 0) -> Data:
    """Load a dataset by name (see :data:`KNOWN_DATASETS`) or a CPF-format ``.npz`` by path.

    Args:
        name: a known name (``cora``, ``a-computer``, ``ogbn-arxiv``, ``texas``, ``synthetic``, ...)
            or the path of a ``.npz`` file in the CPF layout, or ``pyg:CLASS[/NAME]``, any PyG
            node-classification dataset class (:mod:`vqgraph.data.pyg`) under ``<root>/pyg/CLASS``.
        root: the data root (default: ``$VQGRAPH_DATA``, else ``./datasets``); several folders
            separated by ``os.pathsep`` are searched in order (:func:`resolve_data_roots`).
        download: fetch missing files from the dataset's public source into the first root
            (written through a temporary file and checked before it is kept).
        seed: seed of the ``synthetic`` graph (ignored by real datasets).

    Returns:
        A canonical ``Data`` (see :func:`vqgraph.data.graph.build_graph`). Datasets with fixed
        splits (OGB, heterophilic) carry ``train_mask``/``val_mask``/``test_mask`` of shape [N, S].

    Raises:
        KeyError: unknown name. DatasetNotFoundError: files missing (names every path searched).
        DataFormatError: corrupt or truncated files. GraphValidationError: malformed contents.
    """
    if name.startswith(PYG_PREFIX):
        return load_pyg(name, resolve_data_roots(root), download)
    path = Path(name).expanduser()
    if name.endswith(".npz") or path.is_file():
        if not path.is_file():
            raise DatasetNotFoundError(f"CPF-format file {str(path)!r} does not exist")
        return load_cpf_npz(path)
    spec = get_spec(name)
    if spec.family == "synthetic":
        return make_csbm(seed=seed, name="synthetic")
    roots = resolve_data_roots(root)
    root, found = _locate(spec, roots)
    if found is None:
        if not download:
            raise _not_found(spec, roots)
        _fetch(spec, roots)
        root, found = _locate(spec, roots[:1])
        if found is None:
            raise _not_found(spec, roots, f"A download from {spec.url} finished but left no expected file.")
    if spec.family == "ogb":  # locate() checks only the first file; a partial folder is "not found" too
        missing = [rel for rel in ogb_expected_files(spec.name) if not (root / rel).is_file()]
        if missing:
            raise _not_found(spec, [root], f"Missing: {missing}.")
    if spec.family == "ogb":
        return load_ogb(spec.name, root)
    data = (load_cpf_npz if spec.family == "cpf" else load_heterophilic_npz)(found, name=spec.name)
    verify_checksum(found, spec.candidates)  # after the checks: a corrupt file is one error, not also a warning
    return data


def dataset_info(name: str, root: Optional[PathLike] = None) -> Dict[str, object]:
    """Describe ``name`` without downloading: where it was found (or why not) and its figures."""
    from vqgraph.data.graph import num_undirected_edges
    from vqgraph.data.splits import make_split

    spec = get_spec(name)
    roots = resolve_data_roots(root)
    info: Dict[str, object] = {"name": spec.name, "family": spec.family, "description": spec.description}
    try:
        data = load_dataset(spec.name, root=os.pathsep.join(map(str, roots)), download=False)
    except Exception as err:  # reported, not raised: the listing covers every dataset
        info.update(available=False, path=None, reason=f"{type(err).__name__}: {err}")
        return info
    found = _locate(spec, roots)[1]
    split = make_split(data, seed=0)
    info.update(
        available=True,
        path=str(found) if found is not None else "generated",
        num_nodes=data.num_nodes,
        num_edges=num_undirected_edges(data),
        num_features=data.num_features,
        num_classes=data.num_classes,
        split_sizes=split.sizes(),
        num_fixed_splits=int(data.train_mask.size(1)) if "train_mask" in data else 0,
    )
    return info
