"""The ``.pt2`` files :func:`~vqgraph.serving.load_exported` reads: only what vqgraph's exporter
writes, checked before torch reads a byte of them.

``torch.export.load`` trusts its file: a weight or constant marked as pickled is unpickled (any
code runs), sample inputs that the restricted reader refuses are unpickled in full, guard code and
symbolic sizes are evaluated, and a graph node may name any ``torch.*`` attribute. So the file is
read into memory once and checked there, and torch gets those very bytes:

* a manifest (``extra/vqgraph.json``, which the exporter adds) names every member with its
  SHA-256: a file that is not ours, or was changed after export, is refused;
* the members are exactly the ones our exporter writes (no legacy weight pickles, no compiled
  code, no extra files); every weight is raw float32 (or int64) bytes of its recorded size, never a pickle;
  there are no constants and no custom objects;
* the program calls only the ATen operators a student's serving module exports to, has no guard
  code, and its only symbolic size is the batch dimension;
* the sample inputs (a small pickle torch writes beside the program) refer to nothing but the
  tensor-rebuilding functions; anything else in them is refused unread.

The manifest is no signature (whoever crafts a file can write one): the checks after it are what
keep a crafted file from running code. A failed check is an ``ArtifactMismatchError`` naming the
path and what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickletools
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

from vqgraph.errors import ArtifactMismatchError
from vqgraph.utils.io import compressed_member

MANIFEST = "extra/vqgraph.json"
EXPORT_FORMAT, EXPORT_FORMAT_VERSION = "vqgraph-export", 1
FIXED_MEMBERS = frozenset({
    "archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id", "models/model.json",
    "data/weights/model_weights_config.json", "data/constants/model_constants_config.json",
    "data/sample_inputs/model.pt", MANIFEST,
})
WEIGHT = re.compile(r"weight_\d+")
# every ATen operator a ServingModule of an MLPStudent exports to (any norm, transform, codebook and metric)
STUDENT_OPERATORS = (
    "_assert_tensor_metadata.default", "abs.default", "argmax.default", "batch_norm.default", "clamp_min.default",
    "div.Tensor", "dropout.default", "expand_as.default", "full_like.default", "layer_norm.default",
    "linalg_vector_norm.default", "linear.default", "matmul.default", "mul.Tensor", "relu.default", "softmax.int",
    "sub.Tensor", "sum.dim_IntList", "t.default", "to.device",
)
# and what a student of the user's own (Predictor(module).save) may add: tensor arithmetic, activations,
# norms, reductions and views; nothing that reads or writes files, allocates by a value or calls out
MODULE_OPERATORS = (
    "add.Tensor", "add.Scalar", "sub.Scalar", "rsub.Scalar", "mul.Scalar", "div.Scalar", "neg.default",
    "pow.Tensor_Scalar", "exp.default", "log.default", "sqrt.default", "rsqrt.default", "reciprocal.default",
    "relu_.default", "gelu.default", "silu.default", "silu_.default", "sigmoid.default", "tanh.default",
    "elu.default", "leaky_relu.default", "softplus.default", "hardtanh.default", "mish.default",
    "log_softmax.int", "clamp.default", "clamp_max.default", "maximum.default", "minimum.default",
    "where.self", "addmm.default", "mm.default", "group_norm.default", "rms_norm.default", "mean.dim",
    "amax.default", "cat.default", "stack.default", "view.default", "reshape.default", "flatten.using_ints",
    "unsqueeze.default", "squeeze.dim", "transpose.int", "permute.default", "clone.default",
    "contiguous.default", "slice.Tensor", "select.int", "narrow.default", "expand.default", "to.dtype",
    "type_as.default", "sym_size.int", "zeros_like.default", "ones_like.default",
)
OPERATORS = frozenset(f"torch.ops.aten.{op}" for op in STUDENT_OPERATORS + MODULE_OPERATORS)
BATCH_SYMBOL = re.compile(r"Symbol\('s\d+', positive=True, integer=True\)")
ITEM_SIZES = {7: 4, 5: 8}  # torch.export's dtype codes of float32 and int64 (batch norm's counter): bytes
# the sample inputs: a tuple of float tensors in a dict; only these may be called by the pickle
SAMPLE_GLOBALS = frozenset({"collections OrderedDict", "torch FloatStorage", "torch._utils _rebuild_tensor_v2"})
SAMPLE_OPCODES = frozenset({
    "PROTO", "STOP", "MARK", "GLOBAL", "REDUCE", "BINPERSID", "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET",
    "BININT", "BININT1", "BININT2", "LONG1", "BINUNICODE", "SHORT_BINUNICODE", "NONE", "NEWTRUE", "NEWFALSE",
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_DICT", "SETITEM", "SETITEMS", "EMPTY_LIST",
    "APPEND", "APPENDS", "MEMOIZE", "FRAME",
})


# what reading a damaged or crafted zip archive may raise (encrypted or unknown compression included)
UNREADABLE = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, NotImplementedError, RuntimeError)


def _refuse(path: Path, what: str):
    return ArtifactMismatchError(f"{path}: {what}; load_exported reads only files written by Predictor.export "
                                 "(format='torch_export') and never runs code from a file")


def _digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def add_manifest(path: Path, predictor: Optional[Dict[str, Any]] = None) -> None:
    """Append the manifest (every member's SHA-256, and ``predictor``: what
    :meth:`~vqgraph.serving.Predictor.load` needs beside the program) to a ``.pt2`` torch has just written."""
    with zipfile.ZipFile(path, "a") as archive:
        names = archive.namelist()
        prefix = names[0].split("/", 1)[0]
        members = {name.split("/", 1)[1]: _digest(archive.read(name)) for name in names}
        manifest = {"format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION, "members": members}
        if predictor is not None:
            manifest["predictor"] = predictor
        archive.writestr(f"{prefix}/{MANIFEST}", json.dumps(manifest, sort_keys=True))


def read_exported(path: Path) -> bytes:
    """The bytes of the ``.pt2`` at ``path`` once they passed every check of this module."""
    return check_exported(path)[0]


def check_exported(path: Path) -> Tuple[bytes, Dict[str, Any]]:
    """``(bytes, manifest)`` of the ``.pt2`` at ``path`` once they passed every check of this module
    (the manifest's ``predictor`` entry, if any, is checked by its reader)."""
    blob = path.read_bytes()
    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
        members = _members(archive, path)
    except UNREADABLE as err:
        if isinstance(err, ArtifactMismatchError):
            raise
        raise ArtifactMismatchError(f"{path}: not a readable .pt2 archive ({err})") from err
    manifest = _check_manifest(members, path)
    _check_weights(members, path)
    if _json(members, "data/constants/model_constants_config.json", path) != {"config": {}}:
        raise _refuse(path, "it holds constants, which vqgraph's exporter never writes")
    try:
        _check_program(_json(members, "models/model.json", path), path)
    except RecursionError as err:
        raise _refuse(path, "its program is nested too deeply") from err
    _check_sample_inputs(members["data/sample_inputs/model.pt"], path)
    return blob, manifest


def _members(archive: zipfile.ZipFile, path: Path) -> Dict[str, bytes]:
    """``{name inside the archive's folder: bytes}``; one folder, only the members we write."""
    packed = compressed_member(archive)
    if packed is not None:
        raise _refuse(path, f"its member {packed!r} is compressed, which torch never writes (it could expand "
                            "to any size)")
    names = archive.namelist()
    prefixes = {name.split("/", 1)[0] for name in names}
    if len(prefixes) != 1 or any("/" not in name for name in names):
        raise _refuse(path, f"its members are not in one folder ({sorted(prefixes)[:3]})")
    members = {name.split("/", 1)[1]: archive.read(name) for name in names}
    for name in members:
        if name not in FIXED_MEMBERS and not (name.startswith("data/weights/")
                                              and WEIGHT.fullmatch(name[len("data/weights/"):])):
            raise _refuse(path, f"unexpected member {name!r}, which vqgraph's exporter never writes")
    missing = sorted(FIXED_MEMBERS - set(members))
    if MANIFEST in missing:
        raise _refuse(path, f"not written by vqgraph's exporter (no {MANIFEST} manifest)")
    if missing:
        raise _refuse(path, f"members {missing} are missing")
    return members


def _json(members: Dict[str, bytes], name: str, path: Path) -> Any:
    try:
        return json.loads(members[name])
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise _refuse(path, f"member {name!r} is not JSON ({type(err).__name__})") from err


def _check_manifest(members: Dict[str, bytes], path: Path) -> Dict[str, Any]:
    manifest = _json(members, MANIFEST, path)
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT \
            or manifest.get("format_version") != EXPORT_FORMAT_VERSION or not isinstance(manifest.get("members"), dict):
        raise _refuse(path, f"its manifest is not a {EXPORT_FORMAT} manifest of version {EXPORT_FORMAT_VERSION}")
    listed, present = manifest["members"], set(members) - {MANIFEST}
    if set(listed) != present:
        raise _refuse(path, f"its members differ from its manifest's ({sorted(present ^ set(listed))[:5]})")
    for name in sorted(present):
        if listed[name] != _digest(members[name]):
            raise _refuse(path, f"member {name!r} was changed after export (its SHA-256 differs from the manifest's)")
    if not isinstance(manifest.get("predictor", {}), dict):
        raise _refuse(path, "its manifest's 'predictor' entry is not a mapping")
    return manifest


def _check_weights(members: Dict[str, bytes], path: Path) -> None:
    """Every weight raw float32 (int64) bytes of the size its metadata says, contiguous; none pickled."""
    config = _json(members, "data/weights/model_weights_config.json", path)
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise _refuse(path, "its weights' index is not a mapping")
    for name, entry in entries.items():
        if not isinstance(entry, dict) or entry.get("use_pickle") is not False:
            raise _refuse(path, f"weight {name!r} is stored as a pickle, which vqgraph never loads")
        file, meta = entry.get("path_name"), entry.get("tensor_meta") or {}
        try:
            sizes = [int(s["as_int"]) for s in meta["sizes"]]
            strides = [int(s["as_int"]) for s in meta["strides"]]
            offset = int(meta["storage_offset"]["as_int"])
            contiguous = [_prod(sizes[i + 1:]) for i in range(len(sizes))]
            size = ITEM_SIZES[meta["dtype"]] * _prod(sizes)
            fits = (isinstance(file, str) and WEIGHT.fullmatch(file) and offset == 0 and strides == contiguous
                    and len(members.get(f"data/weights/{file}", b"")) == size)
        except (KeyError, TypeError, ValueError):
            fits = False
        if not fits:
            raise _refuse(path, f"weight {name!r} is not a contiguous float32 or int64 tensor of the size stored "
                                "for it")


def _prod(sizes) -> int:
    out = 1
    for s in sizes:
        out *= s
    return out


def _check_program(program: Any, path: Path) -> None:
    """Only our operators; no guard code; the batch size the one symbolic size; no custom objects."""
    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        raise _refuse(path, "its program is not an exported program")
    if program.get("guards_code") not in ([], None):
        raise _refuse(path, "its program carries guard code, which would be executed")
    graph = program["graph_module"].get("graph", {})
    if any(graph.get(key) for key in ("custom_obj_values", "sym_bool_values", "sym_float_values")):
        raise _refuse(path, "its program holds custom objects or symbolic values vqgraph's exporter never writes")
    for key, value in _items(program):
        if key == "target" and value not in OPERATORS:
            raise _refuse(path, f"its program calls {str(value)[:80]!r}, not an operator vqgraph's exporter writes")
        if key == "expr_str" and not (isinstance(value, str) and BATCH_SYMBOL.fullmatch(value)):
            raise _refuse(path, f"its program has the symbolic size {str(value)[:80]!r}, not a batch size")
    if not all(re.fullmatch(r"s\d+", str(name)) for name in program.get("range_constraints") or {}):
        raise _refuse(path, "its program constrains symbols other than the batch size")


def _items(value: Any) -> Iterator:
    """Every ``(key, value)`` of the nested dicts and lists ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _items(item)
    elif isinstance(value, list):
        for item in value:
            yield from _items(item)


def _check_sample_inputs(blob: bytes, path: Path) -> None:
    """The sample inputs' pickle calls only the tensor-rebuilding functions: read, never run."""
    try:
        inner = zipfile.ZipFile(io.BytesIO(blob))
        pickles = [inner.read(name) for name in inner.namelist() if name.endswith(".pkl")]
        for data in pickles:
            for opcode, arg, _ in pickletools.genops(data):
                if opcode.name not in SAMPLE_OPCODES or (opcode.name == "GLOBAL" and arg not in SAMPLE_GLOBALS):
                    what = arg if opcode.name == "GLOBAL" else opcode.name
                    raise _refuse(path, f"its sample inputs hold a pickled {what!r}, which vqgraph never loads")
    except UNREADABLE as err:
        if isinstance(err, ArtifactMismatchError):
            raise
        raise _refuse(path, f"its sample inputs are not a tensor file ({err})") from err
    if len(pickles) != 1:
        raise _refuse(path, "its sample inputs are not one tensor file")
