"""An ONNX model as protobuf bytes, written with the standard library for onnxruntime.

The ``onnxruntime`` backend needs a small graph of standard operators (Gemm, Relu, Softmax,
ArgMax, ...). The ``onnx`` package would build it, but importing it costs about a second
(its ``ml_dtypes`` dependency; docs/speed.md), more than the rest of a serving process's start
beyond torch. So the few messages used are encoded here, field numbers as in ``onnx.proto``
(ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto), and
onnxruntime checks the model when it builds its session; ``tests/test_serving.py`` holds the
backend equal to the eager module.
"""

from __future__ import annotations

import struct
from typing import Iterable, Sequence, Union

import numpy as np

FLOAT, INT64 = 1, 7  # TensorProto.DataType
_ELEMENT = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64}
OPSET, IR_VERSION = 17, 8  # IR version 8 is the one of opset 17


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 two's complement: a negative axis takes ten bytes
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(value)) + value


def _str(field: int, value: str) -> bytes:
    return _bytes(field, value.encode())


def _each(field: int, items: Iterable[bytes]) -> bytes:
    return b"".join(_bytes(field, item) for item in items)


def tensor(name: str, array: np.ndarray) -> bytes:
    """A TensorProto (float32 or int64, any shape; a scalar has no dims)."""
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return (b"".join(_int(1, d) for d in array.shape) + _int(2, _ELEMENT[array.dtype.newbyteorder("=")])
            + _str(8, name) + _bytes(9, array.tobytes()))


def node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], **attributes: Union[int, float]) -> bytes:
    """A NodeProto of the default domain; integer and float attributes."""
    attrs = []
    for name, value in attributes.items():
        if isinstance(value, float):  # AttributeProto: f (fixed32), type FLOAT = 1
            attrs.append(_str(1, name) + _varint(2 << 3 | 5) + struct.pack("<f", value) + _int(20, 1))
        else:  # i (int64), type INT = 2
            attrs.append(_str(1, name) + _int(3, int(value)) + _int(20, 2))
    return (b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs) + _str(4, op_type)
            + _each(5, attrs))


def value_info(name: str, element: int, dims: Sequence[Union[int, str]]) -> bytes:
    """A ValueInfoProto of a tensor; a ``str`` dimension is symbolic (``batch``)."""
    shape = _each(1, (_str(2, d) if isinstance(d, str) else _int(1, d) for d in dims))
    return _str(1, name) + _bytes(2, _bytes(1, _int(1, element) + _bytes(2, shape)))


def model(name: str, nodes: Sequence[bytes], initializers: Sequence[bytes], inputs: Sequence[bytes],
          outputs: Sequence[bytes]) -> bytes:
    """A serialised ModelProto of one graph, opset :data:`OPSET` of the default domain."""
    graph = _each(1, nodes) + _str(2, name) + _each(5, initializers) + _each(11, inputs) + _each(12, outputs)
    return _int(1, IR_VERSION) + _bytes(7, graph) + _bytes(8, _str(1, "") + _int(2, OPSET))
