"""Safe reading of ``.npz`` archives: never unpickles, and turns every failure into a clear error."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Dict, Iterable

import numpy as np

from vqgraph.data.arrays import physical_memory
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
        _check_members(path)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except MemoryError as err:  # a zip member that really is that large (a zip bomb, or a file too big here)
        raise DataFormatError(f"{path}: an array of this .npz does not fit in memory: {err}") from err
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        if isinstance(err, (FileNotFoundError, DataFormatError)):  # ours, from _check_members
            raise
        hint = " (it holds pickled objects, which vqgraph never loads)" if "pickle" in str(err) else ""
        raise DataFormatError(f"{path}: not a readable .npz archive{hint}: {err}") from err
    missing = [key for key in required if key not in arrays]
    if missing:
        raise DataFormatError(
            f"{path}: missing array(s) {missing}; found {sorted(arrays)}. Expected keys: {sorted(required)}"
        )
    return arrays


def _check_members(path: Path) -> None:
    """Refuse, before numpy reads them, an archive holding one array name twice (numpy would keep
    one of them silently), an array whose ``.npy`` header declares more data than its member
    holds (numpy would allocate the declared size first: terabytes for a few bytes of file), and
    arrays larger in all than this machine's memory (a compressed archive of zeros: any size)."""
    with zipfile.ZipFile(path) as archive:
        names = [info.filename for info in archive.infolist()]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise DataFormatError(f"{path}: holds {twice} more than once (which copy numpy would read is "
                                  "arbitrary); the file is corrupt or was appended to")
        total = 0
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):  # np.load ignores other members
                continue
            total += info.file_size
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = reader(member, max_header_size=10000)
                if dtype.hasobject:  # np.load refuses it (allow_pickle=False) with its own message
                    continue
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared > info.file_size - member.tell():
                    key = info.filename[:-4]
                    raise DataFormatError(f"{path}: {key!r} declares shape {shape} of {dtype} ({declared} bytes), "
                                          f"but its member holds {info.file_size - member.tell()} bytes; the file is "
                                          "corrupt or not in the expected layout")
        have = physical_memory()
        if have is not None and total > have:  # a compressed archive of zeros can declare any size
            raise DataFormatError(f"{path}: its arrays take {total / 2**30:.1f} GiB uncompressed, more than this "
                                  f"machine's {have / 2**30:.1f} GiB of memory; the file is corrupt or too large here")
