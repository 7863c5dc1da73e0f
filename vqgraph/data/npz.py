"""Safe reading of ``.npz`` archives: never unpickles, and turns every failure into a clear error."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Dict, Iterable

import numpy as np

from vqgraph.errors import DataFormatError


def read_npz(path: Path, required: Iterable[str]) -> Dict[str, np.ndarray]:
    """Load every array of ``path`` with ``allow_pickle=False``.

    Raises:
        DataFormatError: the file is not a readable npz (corrupt, truncated), an array needs
            pickle (object arrays are refused), or one of ``required`` keys is missing.
    """
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):  # np.load would try pickle, or return a bare .npy array
        raise DataFormatError(f"{path}: not a readable .npz archive (not a zip file: corrupt, truncated or not an .npz)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        hint = " (it holds pickled objects, which vqgraph never loads)" if "pickle" in str(err) else ""
        raise DataFormatError(f"{path}: not a readable .npz archive{hint}: {err}") from err
    missing = [key for key in required if key not in arrays]
    if missing:
        raise DataFormatError(
            f"{path}: missing array(s) {missing}; found {sorted(arrays)}. Expected keys: {sorted(required)}"
        )
    return arrays
