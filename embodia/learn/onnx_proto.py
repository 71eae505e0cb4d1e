"""The few ONNX protobuf messages an MLP policy needs, encoded directly (protobuf wire format).

`import onnx` costs about a second (its ml_dtypes extension), more than the whole torch-free export; the
messages here are a dozen fields of `onnx.proto` (field numbers cited beside each), checked against
`onnx.checker` and ONNX Runtime in the tests.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

import numpy as np

IR_VERSION = 8  # what torch.onnx writes for opset 17
FLOAT, INT64 = 1, 7  # TensorProto.DataType
_DTYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64}
_ATTR_FLOAT, _ATTR_INT = 1, 2  # AttributeProto.AttributeType
_VARINT, _LEN, _FIXED32 = 0, 2, 5  # wire types


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as its two's complement (10 bytes)
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _int(field: int, value: int) -> bytes:
    return _key(field, _VARINT) + _varint(int(value))


def _bytes(field: int, value: bytes) -> bytes:
    return _key(field, _LEN) + _varint(len(value)) + value


def _str(field: int, value: str) -> bytes:
    return _bytes(field, value.encode("utf-8"))


def tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto (dims 1, data_type 2, name 8, raw_data 9) of a float32 or int64 array, little-endian."""
    array = np.ascontiguousarray(array)
    if array.dtype not in _DTYPES:
        raise TypeError(f"ONNX initializer {name!r} has dtype {array.dtype}; only float32 and int64 are written")
    dims = b"".join(_int(1, size) for size in array.shape)
    return dims + _int(2, _DTYPES[array.dtype]) + _str(8, name) + _bytes(9, array.astype(array.dtype.newbyteorder("<")).tobytes())


def attribute(name: str, value: float) -> bytes:
    """AttributeProto (name 1, f 2 as float32, i 3, type 20) of one float or int."""
    if isinstance(value, float):
        return _str(1, name) + _key(2, _FIXED32) + struct.pack("<f", value) + _int(20, _ATTR_FLOAT)
    return _str(1, name) + _int(3, value) + _int(20, _ATTR_INT)


def node(op_type: str, inputs: Iterable[str], outputs: Iterable[str], name: str,
         attributes: Mapping[str, float | int] | None = None) -> bytes:
    """NodeProto (input 1, output 2, name 3, op_type 4, attribute 5) of the default domain."""
    fields = [_str(1, value) for value in inputs] + [_str(2, value) for value in outputs]
    fields += [_str(3, name), _str(4, op_type)]
    fields += [_bytes(5, attribute(key, value)) for key, value in (attributes or {}).items()]
    return b"".join(fields)


def value_info(name: str, elem_type: int, dims: Iterable[int | str]) -> bytes:
    """ValueInfoProto (name 1, type 2) of a tensor: TypeProto.tensor_type 1 -> elem_type 1, shape 2 -> dim 1 ->
    dim_value 1 (a size) or dim_param 2 (a symbolic size such as "batch")."""
    shape = b"".join(_bytes(1, _str(2, dim) if isinstance(dim, str) else _int(1, dim)) for dim in dims)
    return _str(1, name) + _bytes(2, _bytes(1, _int(1, elem_type) + _bytes(2, shape)))


def model(*, nodes: Iterable[bytes], initializers: Iterable[bytes], inputs: Iterable[bytes],
          outputs: Iterable[bytes], graph_name: str, opset: int, producer: tuple[str, str],
          metadata: Mapping[str, str]) -> bytes:
    """ModelProto (ir_version 1, producer_name 2, producer_version 3, graph 7, opset_import 8, metadata_props 14)
    with its GraphProto (node 1, name 2, initializer 5, input 11, output 12)."""
    graph = b"".join([*(_bytes(1, item) for item in nodes), _str(2, graph_name),
                      *(_bytes(5, item) for item in initializers), *(_bytes(11, item) for item in inputs),
                      *(_bytes(12, item) for item in outputs)])
    opset_import = _str(1, "") + _int(2, opset)  # OperatorSetIdProto: domain 1, version 2
    props = [_bytes(14, _str(1, key) + _str(2, value)) for key, value in metadata.items()]  # StringStringEntryProto
    return b"".join([_int(1, IR_VERSION), _str(2, producer[0]), _str(3, producer[1]), _bytes(7, graph),
                     _bytes(8, opset_import), *props])
