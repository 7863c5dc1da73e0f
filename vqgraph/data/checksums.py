"""The sha256 of each dataset file the project is tested with, in one place.

datasets/README.md lists the same values (``tests/test_checksums.py`` checks that they agree).
A known dataset's file that differs is loaded, with a warning naming the file and both sums:
a deliberately modified copy stays usable, and nobody compares results on another file
without being told.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

# path under the data root (the dataset's own folder) -> sha256
SHA256: Dict[str, str] = {
    "cora/cora.npz": "068e22d90c3849b4057dfb05851741428992af058efcd4e7ebb4186f3d581de2",
    "citeseer/citeseer.npz": "280278b21b434c047922e8389518861416fb3ad39389c27865ff0e6bbb0aaab7",
    "amazon_computers/amazon_computers.npz": "12706504ba4ce5fd0361edc6ae34a7d88b0c1167ab2b3c78867fe6fb978aba98",
    "amazon_photo/amazon_photo.npz": "0310b319aa0b6a85ccdbbadad7c0cd9ac75d4709cb3ef08ac1fccc147bd9ded0",
    "cornell/cornell.npz": "684c54ba3daa13b0ba1f04a3d6dd1b1175c1ae9bdeb982851fd4ff96d3aac298",
    "chameleon/chameleon.npz": "4c640bd2877fc4f9f101531e2f977bc16445a54e09a5cb01178df608e552f3fd",
    "texas/texas.npz": "b164b99e6c3d43e4ab07488ec59bd8c815f90cbc1bd4cf425ce587d2b534d844",
    "wisconsin/wisconsin.npz": "2543c89838cfc75f737f7c4664cc1d097f8268602c20b2d1bd4f21407df9c074",
    "actor/actor.npz": "c350eef06b2c2a9bf8218be2b57cac6d4003d0922eb597a039e9123f75817816",
    "squirrel/squirrel.npz": "d436e3b42c0546b105241c0ab0766097074e68e55f67b133eeb9b0162e55cbd9",
}

_DONE: Dict[Tuple[str, int, int], str] = {}  # (file, size, mtime) -> its sha256, hashed once per process


def sha256_of(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DONE:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _DONE[key] = digest.hexdigest()
    return _DONE[key]


def listed(path: Path, candidates: Iterable[str]) -> Optional[str]:
    """The listed file that ``path`` (found as one of a dataset's ``candidates``) stands for, if any:
    the same file name, wherever under the root it was found."""
    return next((rel for rel in SHA256 if rel in candidates and Path(rel).name == path.name), None)


def verify(path: Path, candidates: Iterable[str]) -> bool:
    """Whether ``path`` has its listed sha256 (True when none is listed); warns when it does not."""
    rel = listed(Path(path), tuple(candidates))
    if rel is None:
        return True
    actual = sha256_of(Path(path))
    if actual == SHA256[rel]:
        return True
    warnings.warn(
        f"{path}: sha256 {actual} differs from {SHA256[rel]}, listed for {rel} in datasets/README.md: this is "
        "not the file the project's results were measured on. It is loaded anyway (a copy you changed on "
        "purpose); otherwise delete it and fetch it again with download=True (command line: --download)",
        UserWarning, stacklevel=3)
    return False
