"""The original Caffe release of VGG (``VGG_ILSVRC_16_layers.caffemodel``, ``..._19_layers``), read and
written without Caffe or a protobuf library.

A ``.caffemodel`` is one protobuf ``NetParameter`` message in the binary wire format. The decoder here
knows only the few fields that carry weights; every other field is skipped by its wire type. Field
numbers used, from Caffe's ``caffe.proto``:

- ``NetParameter``: name 1 (string); ``layer`` 100 (repeated ``LayerParameter``, the "V2" format,
  Caffe >= 2015); ``layers`` 2 (repeated ``V1LayerParameter``, the "V1" format of the 2014 release).
- ``LayerParameter`` (V2): name 1, type 2 (string: "Convolution", "InnerProduct", "LRN", ...),
  blobs 7 (repeated ``BlobProto``), inner_product_param 117.
- ``V1LayerParameter``: name 4, type 5 (enum: CONVOLUTION = 4, INNER_PRODUCT = 14, LRN = 15, ...),
  blobs 6, inner_product_param 17. Its field 1 holds a ``V0LayerParameter`` (the 2013 format), which is
  refused with a pointer to Caffe's upgrade tool.
- ``InnerProductParameter``: transpose 6 (bool; weights stored as (in, out) instead of (out, in)).
- ``BlobProto``: data 5 (repeated float, packed or not), diff 6 (skipped), shape 7 (``BlobShape``),
  double_data 8 (repeated double, read as float32), double_diff 9 (skipped), and the legacy 4-D shape
  num 1, channels 2, height 3, width 4, used when ``shape`` is absent (as in Caffe's ``FromProto``).
- ``BlobShape``: dim 1 (repeated int64, packed or not).

Wire types: 0 varint, 1 fixed 64-bit, 2 length-delimited, 5 fixed 32-bit (3/4, groups, are refused).
Every length is checked against the end of its enclosing message before it is used ("truncated at
byte N"), files over :data:`MAX_FILE_BYTES` are refused before they are read, and a blob's declared
shape must account for exactly the values the file stores, so nothing is ever allocated from a size
the file merely claims. Nothing is executed and nothing is unpickled.

Mapping onto Table 1 (§2.1): the release names its layers as the paper does (conv1_1 ... conv5_k,
fc6, fc7, fc8) and Caffe's layouts are PyTorch's: conv weights (out, in, kh, kw), fully connected
weights (out, in) (the 2014 files store them as a legacy 4-D blob (1, 1, out, in), and biases as
(1, 1, 1, out)). Caffe's InnerProduct flattens its (N, C, H, W) input row-major, index c*H*W + h*W + w,
which is exactly ``torch.flatten(pool5, 1)``, so fc6's (4096, 25088) matrix is used as is, and the
dense-mode reshape of fc6 into a 7x7 convolution (§3.2) holds for these weights too. Caffe pools in ceil
mode and our model in floor mode; on crop-sized inputs (multiples of 32) the two agree.

The configuration is inferred from the weights alone: the sequence of conv kernel sizes and widths
(C is D with 1x1 convs in stages 3-5), an LRN layer after conv1_1 (A-LRN), width = conv1_1's outputs /
64, fc_dim from fc6, num_classes from fc8 and crop size = 32 * sqrt(fc6 inputs / pool5 channels).

The release's conv1_1 expects **BGR** input in 0-255 with the mean pixel (B, G, R) = (103.939,
116.779, 123.68) subtracted. The imported weights are kept as they are and the metadata says so
(``PRESETS["caffe"]``); :class:`vggnet.data.transforms.Normalizer` then flips our RGB batches.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.preprocessing import PRESETS, Preprocessing
from ..errors import VGGError
from ..fileio import atomic_write
from .configs import TABLE1, parse_config
from .meta import ArchSpec, WeightsMeta
from .vgg import FC_NAMES, VGG, model_from_spec, scaled_width
from .weights import default_classes

MAX_FILE_BYTES = 2 * 1024**3  # the release's files are about 530 MiB (16 layers) and 550 MiB (19)
MAX_PROTOTXT_BYTES = 16 * 1024**2
MAX_PROTOTXT_DEPTH = 32
MAX_BLOB_DIMS = 32

# Wire types.
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

# Field numbers (caffe.proto; see the module docstring).
NET_NAME, NET_LAYERS_V1, NET_LAYER_V2 = 1, 2, 100
V2_NAME, V2_TYPE, V2_BLOBS, V2_IP_PARAM = 1, 2, 7, 117
V1_V0_LAYER, V1_NAME, V1_TYPE, V1_BLOBS, V1_IP_PARAM = 1, 4, 5, 6, 17
# The fields read from a layer message, by format: number -> (what it is, wire type).
V2_FIELDS = {
    V2_NAME: ("layer name", LENGTH),
    V2_TYPE: ("layer type", LENGTH),
    V2_BLOBS: ("blobs", LENGTH),
    V2_IP_PARAM: ("inner_product_param", LENGTH),
}
V1_FIELDS = {
    V1_NAME: ("layer name", LENGTH),
    V1_TYPE: ("layer type", VARINT),
    V1_BLOBS: ("blobs", LENGTH),
    V1_IP_PARAM: ("inner_product_param", LENGTH),
}
IP_TRANSPOSE = 6
BLOB_LEGACY = (1, 2, 3, 4)  # num, channels, height, width
BLOB_DATA, BLOB_DIFF, BLOB_SHAPE, BLOB_DOUBLE_DATA, BLOB_DOUBLE_DIFF = 5, 6, 7, 8, 9
SHAPE_DIM = 1

# V1LayerParameter.LayerType, under the V2 type names (only a few matter; the rest name layers in errors).
V1_TYPES = {
    0: "None",
    1: "Accuracy",
    3: "Concat",
    4: "Convolution",
    5: "Data",
    6: "Dropout",
    8: "Flatten",
    12: "ImageData",
    14: "InnerProduct",
    15: "LRN",
    17: "Pooling",
    18: "ReLU",
    19: "Sigmoid",
    20: "Softmax",
    21: "SoftmaxWithLoss",
    22: "Split",
    23: "TanH",
    24: "WindowData",
    29: "MemoryData",
    39: "Deconvolution",
}
V1_TYPE_IDS = {"Convolution": 4, "InnerProduct": 14, "LRN": 15}
CONV, FC, LRN = "convolution", "innerproduct", "lrn"  # canonical type names (see _canon)

# Repeated fixed-width values written unpacked, one key byte per value: (field << 3 | wire type) -> width.
# The release writes packed arrays, but an unpacked one is legal protobuf; these runs are decoded with
# numpy (a Python loop over 138 million floats would take minutes).
_RUNS = {
    BLOB_DATA << 3 | FIXED32: "<f4",
    BLOB_DIFF << 3 | FIXED32: "<f4",
    BLOB_DOUBLE_DATA << 3 | FIXED64: "<f8",
    BLOB_DOUBLE_DIFF << 3 | FIXED64: "<f8",
}
_KEEP = {BLOB_DATA, BLOB_DOUBLE_DATA}


@dataclass
class CaffeLayer:
    """One layer of a Caffe net: its name, its type (V2 spelling) and its blobs, shaped as stored."""

    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)
    transpose: bool = False  # InnerProduct weights stored as (in, out)


@dataclass
class CaffeNet:
    name: str
    format: str  # "V1" or "V2"
    layers: list[CaffeLayer]


def _canon(type_name: str) -> str:
    """ "InnerProduct", "INNER_PRODUCT" and "innerproduct" are one type (V2 strings, V1 enum names)."""
    return re.sub(r"[^a-z0-9]", "", type_name.lower())


# -- decoding -------------------------------------------------------------------------------------
class _Decoder:
    """Bounded reader of the protobuf wire format over one buffer. Every read is checked against the
    end of the message it belongs to, so a length that runs past it fails with its byte offset."""

    def __init__(self, data: bytes, where: str):
        self.data = data
        self.where = where

    def fail(self, at: int, why: str):
        raise VGGError(f"{self.where}: not a readable Caffe model: {why} at byte {at}")

    def truncated(self, end: int, at: int, what: str):
        raise VGGError(
            f"{self.where}: not a readable Caffe model: truncated at byte {end} "
            f"({what} starting at byte {at} runs past it)"
        )

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        data, start, value, shift = self.data, pos, 0, 0
        while True:
            if pos >= end:
                self.truncated(end, start, "a varint")
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift >= 70:
                self.fail(start, "a varint longer than 10 bytes")
        if value >= 1 << 64:
            self.fail(start, "a varint over 64 bits")
        return value, pos

    def field(self, pos: int, end: int):
        """(number, wire type, value, next position, start): value is an int for varints, the offset of
        the bytes for fixed-width fields and the (start, stop) span of a length-delimited one."""
        at = pos
        key, pos = self.varint(pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            self.fail(at, "field number 0")
        if wire == VARINT:
            value, pos = self.varint(pos, end)
        elif wire in (FIXED64, FIXED32):
            value, pos = pos, pos + (8 if wire == FIXED64 else 4)
        elif wire == LENGTH:
            n, pos = self.varint(pos, end)
            value, pos = (pos, pos + n), pos + n
        else:
            self.fail(at, f"unsupported wire type {wire} (field {number})")
        if pos > end:
            self.truncated(end, at, f"field {number}")
        return number, wire, value, pos, at

    def fields(self, start: int, end: int):
        pos = start
        while pos < end:
            number, wire, value, pos, at = self.field(pos, end)
            yield number, wire, value, at

    def need(self, wire: int, expected: int, number: int, at: int, what: str):
        if wire != expected:
            self.fail(at, f"field {number} ({what}) has wire type {wire}, expected {expected}")

    def string(self, span) -> str:
        return self.data[span[0] : span[1]].decode("utf-8", errors="replace")

    def collect(self, span, wanted: dict, refuse: dict | None = None) -> dict:
        """The fields `wanted` ({number: (what, wire type)}) of the message in `span`, each a list
        of (value, offset) in file order; a field of `refuse` ({number: message}) is an error."""
        found = {number: [] for number in wanted}
        for number, wire, value, at in self.fields(*span):
            if refuse and number in refuse:
                raise VGGError(f"{self.where}: {refuse[number]}")
            if number in wanted:
                what, expected = wanted[number]
                self.need(wire, expected, number, at, what)
                found[number].append((value, at))
        return found

    def last_string(self, found: list, default: str) -> str:
        return self.string(found[-1][0]) if found else default

    # -- NetParameter ------------------------------------------------------------------------------
    def net(self) -> CaffeNet:
        f = self.collect(
            (0, len(self.data)),
            {
                NET_NAME: ("net name", LENGTH),
                NET_LAYER_V2: ("layer", LENGTH),
                NET_LAYERS_V1: ("layers", LENGTH),
            },
        )
        v1, v2 = f[NET_LAYERS_V1], f[NET_LAYER_V2]
        if v1 and v2:
            raise VGGError(
                f"{self.where}: holds both V1 'layers' and V2 'layer' fields; Caffe refuses such a net too"
            )
        if not v1 and not v2:
            raise VGGError(f"{self.where}: not a Caffe model: no layers (NetParameter field 100 or 2) found")
        name = self.last_string(f[NET_NAME], "")
        if v2:
            return CaffeNet(name, "V2", [self.layer_v2(span) for span, _ in v2])
        return CaffeNet(name, "V1", [self.layer_v1(span, at) for span, at in v1])

    def layer_v2(self, span) -> CaffeLayer:
        f = self.collect(span, V2_FIELDS)
        return self.layer_of(f, span, self.last_string(f[V2_TYPE], ""), (V2_NAME, V2_BLOBS, V2_IP_PARAM))

    def layer_v1(self, span, at_layer: int) -> CaffeLayer:
        v0 = (
            f"the layer at byte {at_layer} is in Caffe's V0 format (2013); convert the file with Caffe's "
            f"upgrade_net_proto_binary first"
        )
        f = self.collect(span, V1_FIELDS, refuse={V1_V0_LAYER: v0})
        code = f[V1_TYPE][-1][0] if f[V1_TYPE] else None
        type_name = "None" if code is None else V1_TYPES.get(code, f"V1 type {code}")
        return self.layer_of(f, span, type_name, (V1_NAME, V1_BLOBS, V1_IP_PARAM))

    def layer_of(self, found: dict, span, type_name: str, numbers) -> CaffeLayer:
        name, blobs, ip_param = numbers
        transpose = self.transpose(found[ip_param][-1][0]) if found[ip_param] else False
        return self.layer(
            self.last_string(found[name], "") or f"#{span[0]}",
            type_name,
            [value for value, _ in found[blobs]],
            transpose,
        )

    def layer(self, name, type_name, blob_spans, transpose) -> CaffeLayer:
        # Blobs are decoded once the name is known, so their errors can name the layer.
        blobs = [self.blob(s, e, f"layer {name} blob {i}") for i, (s, e) in enumerate(blob_spans)]
        return CaffeLayer(name, type_name, blobs, transpose)

    def transpose(self, span) -> bool:
        flag = False
        for number, wire, value, _ in self.fields(*span):
            if number == IP_TRANSPOSE and wire == VARINT:
                flag = bool(value)
        return flag

    # -- BlobProto ---------------------------------------------------------------------------------
    def blob(self, start: int, end: int, what: str) -> np.ndarray:
        chunks, dims, legacy, has_shape = [], [], {}, False
        pos = start
        while pos < end:
            key = self.data[pos]
            if key in _RUNS:  # an unpacked run of floats/doubles: decoded all at once
                values, pos = self.run(pos, end, key, _RUNS[key])
                if key >> 3 in _KEEP:
                    chunks.append(values.astype(np.float32))
                continue
            number, wire, value, pos, at = self.field(pos, end)
            if number in (BLOB_DATA, BLOB_DOUBLE_DATA):
                self.need(wire, LENGTH, number, at, "blob data")
                chunks.append(self.packed(value, "<f4" if number == BLOB_DATA else "<f8", at))
            elif number == BLOB_SHAPE:
                self.need(wire, LENGTH, number, at, "blob shape")
                has_shape = True
                dims += self.shape(value)
            elif number in BLOB_LEGACY:
                self.need(wire, VARINT, number, at, "blob dimension")
                legacy[number] = self.signed(value)
        data = chunks[0] if len(chunks) == 1 else np.concatenate(chunks or [np.zeros(0, np.float32)])
        if has_shape:
            shape = tuple(dims)
        elif legacy:  # Caffe's legacy 4-D shape; an absent dimension is 0, as in caffe.proto
            shape = tuple(legacy.get(n, 0) for n in BLOB_LEGACY)
        else:
            shape = (data.size,)
        if len(shape) > MAX_BLOB_DIMS or any(d < 0 for d in shape):
            raise VGGError(f"{self.where}: {what}: invalid shape {shape}")
        count = math.prod(shape)
        if count != data.size:
            raise VGGError(
                f"{self.where}: {what}: shape {shape} holds {count} values but the file stores {data.size}"
            )
        return data.reshape(shape)

    def signed(self, value: int) -> int:
        return value - (1 << 64) if value >= 1 << 63 else value  # int64 as two's complement

    def shape(self, span) -> list[int]:
        dims = []
        for number, wire, value, at in self.fields(*span):
            if number != SHAPE_DIM:
                continue
            if wire == VARINT:
                dims.append(self.signed(value))
            elif wire == LENGTH:  # packed
                pos, end = value
                while pos < end:
                    d, pos = self.varint(pos, end)
                    dims.append(self.signed(d))
            else:
                self.fail(at, f"blob shape dim has wire type {wire}")
            if len(dims) > MAX_BLOB_DIMS:
                self.fail(at, f"a blob shape with more than {MAX_BLOB_DIMS} dimensions")
        return dims

    def packed(self, span, dtype: str, at: int) -> np.ndarray:
        start, stop = span
        size = np.dtype(dtype).itemsize
        if (stop - start) % size:
            self.fail(at, f"packed data of {stop - start} bytes, not a multiple of {size}")
        # astype copies: the arrays own their memory and the file's bytes can be freed.
        return np.frombuffer(self.data, dtype, (stop - start) // size, start).astype(np.float32)

    def run(self, pos: int, end: int, key: int, dtype: str) -> tuple[np.ndarray, int]:
        """Values of one field written unpacked: key byte, value, key byte, value, ... up to the first
        key that differs. Rows of (1 + width) bytes are exact: each row starts where a key must be."""
        stride = 1 + np.dtype(dtype).itemsize
        rows = (end - pos) // stride
        table = np.frombuffer(self.data, np.uint8, rows * stride, pos).reshape(rows, stride)
        other = np.flatnonzero(table[:, 0] != key)
        n = int(other[0]) if other.size else rows
        stop = pos + n * stride
        if n == rows and stop < end and self.data[stop] == key:
            self.truncated(end, stop, "a fixed-width value")
        return table[:n, 1:].copy().view(dtype).reshape(n), stop


def decode_caffemodel(data: bytes, where: str = "<bytes>") -> CaffeNet:
    """Decode the bytes of a ``.caffemodel`` (a binary ``NetParameter``)."""
    if not data:
        raise VGGError(f"{where}: empty file, not a Caffe model")
    return _Decoder(bytes(data), where).net()


def read_caffemodel(path) -> CaffeNet:
    """Read a ``.caffemodel`` file: every layer with its name, type and weight blobs."""
    path = Path(path)
    if not path.is_file():
        raise VGGError(f"Caffe model not found: {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise VGGError(
            f"{path}: {size} bytes, over the {MAX_FILE_BYTES}-byte limit for a Caffe model "
            f"(the release's 19-layer file is about 550 MiB)"
        )
    return decode_caffemodel(path.read_bytes(), str(path))


# -- encoding -------------------------------------------------------------------------------------
def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _length_field(number: int, payload: bytes) -> bytes:
    return _key(number, LENGTH) + _varint(len(payload)) + payload


def _encode_blob(array: np.ndarray, legacy: bool) -> bytes:
    """A BlobProto: the V1 release's legacy 4-D shape (leading 1s: fc weights (1, 1, out, in), biases
    (1, 1, 1, n)) or a V2 BlobShape, then the values as one packed float array."""
    array = np.ascontiguousarray(array, dtype="<f4")
    if legacy:
        if array.ndim > 4:
            raise VGGError(f"a blob of shape {array.shape} has no legacy 4-D form")
        dims = (1,) * (4 - array.ndim) + array.shape
        head = b"".join(_key(n, VARINT) + _varint(d) for n, d in zip(BLOB_LEGACY, dims))
        return head + _length_field(BLOB_DATA, array.tobytes())
    shape = _length_field(SHAPE_DIM, b"".join(_varint(d) for d in array.shape))
    return _length_field(BLOB_DATA, array.tobytes()) + _length_field(BLOB_SHAPE, shape)


def _encode_layer(layer: CaffeLayer, fmt: str) -> bytes:
    transpose = _key(IP_TRANSPOSE, VARINT) + _varint(1) if layer.transpose else b""
    if fmt == "V2":
        parts = [_length_field(V2_NAME, layer.name.encode()), _length_field(V2_TYPE, layer.type.encode())]
        parts += [_length_field(V2_BLOBS, _encode_blob(b, legacy=False)) for b in layer.blobs]
        if transpose:
            parts.append(_length_field(V2_IP_PARAM, transpose))
        return _length_field(NET_LAYER_V2, b"".join(parts))
    if layer.type not in V1_TYPE_IDS:
        raise VGGError(
            f"layer {layer.name}: type {layer.type} has no V1 code here; valid: " + ", ".join(V1_TYPE_IDS)
        )
    parts = [
        _length_field(V1_NAME, layer.name.encode()),
        _key(V1_TYPE, VARINT) + _varint(V1_TYPE_IDS[layer.type]),
    ]
    parts += [_length_field(V1_BLOBS, _encode_blob(b, legacy=True)) for b in layer.blobs]
    if transpose:
        parts.append(_length_field(V1_IP_PARAM, transpose))
    return _length_field(NET_LAYERS_V1, b"".join(parts))


def _check_format(fmt: str) -> str:
    if fmt not in ("V1", "V2"):
        raise VGGError(f"unknown Caffe format {fmt!r}; valid: V1 (the 2014 release's), V2")
    return fmt


def encode_caffemodel(layers: list[CaffeLayer], format: str = "V2", name: str = "") -> bytes:
    """The bytes of a ``.caffemodel`` holding `layers` (names, types and blobs only)."""
    fmt = _check_format(format)
    head = _length_field(NET_NAME, name.encode()) if name else b""
    return head + b"".join(_encode_layer(layer, fmt) for layer in layers)


# -- Table 1 <-> Caffe layers ---------------------------------------------------------------------
def caffe_layers(model: VGG, preprocessing: dict | None = None) -> list[CaffeLayer]:
    """`model`'s weight layers (and A-LRN's LRN) as Caffe layers, in the release's names and layouts.
    The blobs are views of the model's parameters (no copy: fc6 alone is 392 MB at full size).

    `preprocessing` is the input convention the model was trained with; None means it already takes
    Caffe's input. An RGB model with Caffe's value range and mean (ours) becomes a BGR one by
    reversing conv1_1's input channels, which is exact (zero padding is the mean pixel in both).
    """
    if not isinstance(model, VGG):
        raise VGGError(f"export to Caffe takes a VGG model, got {type(model).__name__}")
    if any(isinstance(m, torch.nn.BatchNorm2d) for m in model.features):
        raise VGGError(
            "a net with batch normalisation has no counterpart in the Caffe release (Table 1 "
            "nets have none); export a net without it"
        )
    flip = _rgb_to_bgr(preprocessing)
    named = model.weight_layers()
    layers = []
    for stage in parse_config(model.arch):
        for layer in stage:
            if not layer.is_conv:
                layers.append(CaffeLayer(layer.name, "LRN"))
                continue
            weight = named[layer.name].weight.detach().cpu().float().numpy()
            if flip and layer.name == "conv1_1":
                weight = weight[:, ::-1]
            layers.append(
                CaffeLayer(
                    layer.name, "Convolution", [weight, named[layer.name].bias.detach().cpu().float().numpy()]
                )
            )
    for fc in FC_NAMES:
        layers.append(
            CaffeLayer(
                fc,
                "InnerProduct",
                [
                    named[fc].weight.detach().cpu().float().numpy(),
                    named[fc].bias.detach().cpu().float().numpy(),
                ],
            )
        )
    return layers


def _rgb_to_bgr(preprocessing) -> bool:
    """Whether conv1_1 must be flipped to express `preprocessing` as Caffe's input; refuse what a
    Caffe file cannot express (it stores no preprocessing: readers assume the release's)."""
    if preprocessing is None:
        return False
    if not isinstance(preprocessing, Preprocessing):
        preprocessing = Preprocessing.from_dict(preprocessing)
    caffe, order = PRESETS["caffe"], preprocessing.channel_order
    mean_bgr = preprocessing.mean[::-1] if order == "RGB" else preprocessing.mean
    same = (
        preprocessing.value_range == caffe.value_range
        and preprocessing.std == caffe.std
        and np.allclose(mean_bgr, caffe.mean, atol=1e-3)
    )
    if not same:
        raise VGGError(
            f"a Caffe file stores no preprocessing and is read as the release's "
            f"({caffe.describe()}); weights expecting {preprocessing.describe()} cannot be expressed "
            f"that way"
        )
    return order == "RGB"


def export_caffe(
    model: VGG, path, format: str = "V2", preprocessing: dict | None = None, name: str | None = None
) -> Path:
    """Write `model` as a ``.caffemodel`` (weights, layer names and types; no prototxt). V1 is the
    2014 release's format (legacy 4-D blob shapes), V2 today's. Layer names are the release's, so its
    deploy prototxts describe exported D and E nets. See :func:`caffe_layers` for `preprocessing`."""
    fmt = _check_format(format)
    layers = caffe_layers(model, preprocessing)
    head = _length_field(NET_NAME, (name or f"VGG_{model.arch}").encode())

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(head)
            for layer in layers:  # one layer at a time: fc6 alone is 392 MB at full size
                f.write(_encode_layer(layer, fmt))

    return atomic_write(path, write)


@dataclass
class _Item:
    """A conv or LRN layer, from a file or from Table 1, for matching the two."""

    name: str
    kind: str  # CONV or LRN
    kernel: int = 0
    out: int = 0
    inp: int = 0

    def describe(self) -> str:
        if self.kind == LRN:
            return "LRN"
        return f"{self.kernel}x{self.kernel} conv, {self.inp} -> {self.out} channels"


_PAPER_CONV_NAME = re.compile(r"conv\d+_\d+")


def _matches(got: _Item, want: _Item) -> bool:
    if got.kind != want.kind:
        return False
    if got.kind == LRN:
        return True
    # A file that uses the paper's names must use them for the same layers (conv5_1 is not conv4_4).
    if _PAPER_CONV_NAME.fullmatch(got.name) and got.name != want.name:
        return False
    return (got.kernel, got.out, got.inp) == (want.kernel, want.out, want.inp)


def _table1_items(config: str, width: float) -> list[_Item]:
    items, channels = [], 3
    for stage in parse_config(config):
        for layer in stage:
            if not layer.is_conv:
                items.append(_Item(layer.name, LRN))
                continue
            out = scaled_width(layer.out_channels, width)
            items.append(_Item(layer.name, CONV, layer.kernel, out, channels))
            channels = out
    return items


def _weights(layer: CaffeLayer, kind: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(layer.blobs) != 2:
        raise VGGError(
            f"{where}: layer {layer.name}: {len(layer.blobs)} blobs, expected 2 (weights and biases)"
        )
    weight, bias = layer.blobs
    if kind == CONV:
        if weight.ndim != 4 or weight.shape[2] != weight.shape[3]:
            raise VGGError(
                f"{where}: layer {layer.name}: convolution weights of shape {weight.shape}, "
                f"expected (out, in, k, k)"
            )
    else:
        while weight.ndim > 2 and weight.shape[0] == 1:  # legacy (1, 1, out, in)
            weight = weight.reshape(weight.shape[1:])
        if weight.ndim != 2:
            raise VGGError(
                f"{where}: layer {layer.name}: fully connected weights of shape {weight.shape}, "
                f"expected (out, in)"
            )
        if layer.transpose:
            weight = np.ascontiguousarray(weight.T)
    if bias.size != weight.shape[0]:
        raise VGGError(f"{where}: layer {layer.name}: {bias.size} biases for {weight.shape[0]} outputs")
    return weight, bias.reshape(-1)


def match_table1(layers: list[CaffeLayer], where: str = "<caffe>") -> tuple[dict, dict]:
    """The ``create_model`` arguments of the Table 1 net that `layers` hold, and their weights by paper
    name. Layers are matched by order, type and shape; the first one that fits no configuration is
    named in the error with what the closest configurations expect there."""
    items: list[_Item] = []
    fcs: list[CaffeLayer] = []
    weights: list[tuple[np.ndarray, np.ndarray]] = []
    for layer in layers:
        kind = _canon(layer.type)
        if kind not in (CONV, FC, LRN):
            if layer.blobs:
                raise VGGError(
                    f"{where}: layer {layer.name}: a {layer.type} layer with weights; Table 1 nets "
                    f"hold weights only in Convolution and InnerProduct layers"
                )
            continue
        if fcs and kind != FC:
            raise VGGError(
                f"{where}: layer {layer.name}: {layer.type} after the fully connected layer "
                f"{fcs[0].name}; Table 1 nets end with three fully connected layers"
            )
        if kind == LRN:
            items.append(_Item(layer.name, LRN))
            continue
        weight, bias = _weights(layer, kind, where)
        if kind == FC:
            fcs.append(CaffeLayer(layer.name, layer.type, [weight, bias]))
            continue
        out, inp, k, _ = weight.shape
        items.append(_Item(layer.name, CONV, k, out, inp))
        weights.append((weight, bias))
    if not any(i.kind == CONV for i in items):
        raise VGGError(f"{where}: no convolution layers with weights: not a VGG net")

    prefix = {}
    for config in TABLE1:
        width = _infer_width(items, config)
        want = _table1_items(config, width)
        n = 0
        while n < min(len(items), len(want)) and _matches(items[n], want[n]):
            n += 1
        if n == len(items) == len(want):
            return _finish(config, width, items, weights, fcs, where)
        prefix[config] = (n, want)
    best = max(n for n, _ in prefix.values())
    closest = [(c, want) for c, (n, want) in prefix.items() if n == best]
    # Among equally good prefixes, a configuration as deep as the file is the likelier intent.
    closest = [(c, want) for c, want in closest if len(want) == len(items)] or closest
    if best < len(items):
        got = items[best]
        what = f"layer {got.name}: {got.describe()}"
    else:
        got = fcs[0] if fcs else None
        what = f"layer {got.name}: fully connected" if got else "the file ends after its last conv layer"
    expected: dict[str, list[str]] = {}  # what is expected there -> the configurations expecting it
    for config, want in closest:
        text = f"{want[best].name} ({want[best].describe()})" if best < len(want) else "fc6 (fully connected)"
        expected.setdefault(text, []).append(config)
    alternatives = " or ".join(f"{text} of config {', '.join(configs)}" for text, configs in expected.items())
    raise VGGError(
        f"{where}: {what}; expected {alternatives}: the layers match no Table 1 configuration "
        f"({', '.join(TABLE1)})"
    )


def _infer_width(items: list[_Item], config: str) -> float:
    """The ``width`` argument that gives the file's conv widths in `config`. conv1_1's outputs / 64 is
    exact for the paper's nets and every width whose scaled channels stay proportional; for others
    (width 0.1 gives 6, 13, 26, 51 channels) any width inside all the rounding intervals will do."""
    convs = [i.out for i in items if i.kind == CONV]
    paper = [layer.out_channels for stage in parse_config(config) for layer in stage if layer.is_conv]
    pairs = list(zip(convs, paper))
    simple = convs[0] / 64  # conv1_1 has 64 channels in every configuration (Table 1)
    if all(scaled_width(c, simple) == n for n, c in pairs):
        return simple
    lo = max((n - 0.5) / c for n, c in pairs)
    hi = min((n + 0.5) / c for n, c in pairs)
    middle = (lo + hi) / 2
    if lo < hi and all(scaled_width(c, middle) == n for n, c in pairs):
        return middle
    return simple  # no width fits: the mismatch is reported at the first layer that differs


def _finish(config, width, items, weights, fcs, where):
    conv_names = [i.name for i in _table1_items(config, width) if i.kind == CONV]
    if len(fcs) != 3:
        extra = f" (the fourth is {fcs[3].name})" if len(fcs) > 3 else ""
        raise VGGError(
            f"{where}: {len(fcs)} fully connected layers{extra}, expected 3 (fc6, fc7, fc8; Table 1)"
        )
    (w6, _), (w7, _), (w8, _) = (fc.blobs for fc in fcs)
    pool5 = [i for i in items if i.kind == CONV][-1].out
    fc_dim, fc6_in = w6.shape
    side = math.isqrt(fc6_in // pool5) if fc6_in % pool5 == 0 else 0
    if side < 1 or side * side * pool5 != fc6_in:
        raise VGGError(
            f"{where}: layer {fcs[0].name}: {fc6_in} inputs, not {pool5} pool5 channels x s x s for "
            f"a whole s (the crop size is 32 s)"
        )
    if w7.shape != (fc_dim, fc_dim):
        raise VGGError(
            f"{where}: layer {fcs[1].name}: weights of shape {w7.shape}, expected {(fc_dim, fc_dim)}"
        )
    if w8.shape[1] != fc_dim:
        raise VGGError(
            f"{where}: layer {fcs[2].name}: {w8.shape[1]} inputs, expected {fc_dim} (fc7's outputs)"
        )
    kwargs = dict(
        arch=config, num_classes=int(w8.shape[0]), width=width, fc_dim=int(fc_dim), crop_size=32 * side
    )
    named = dict(zip(conv_names, weights))
    named.update(zip(FC_NAMES, (tuple(fc.blobs) for fc in fcs)))
    return kwargs, named


# -- prototxt -------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""\s+|\#[^\n]*|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[{}\[\]:,;<>]|[^\s{}\[\]:,;<>"'\#]+"""
)


def _tokens(text: str, where: str) -> list[tuple[str, int]]:
    tokens, pos, line = [], 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise VGGError(f"{where}:{line}: cannot read {text[pos : pos + 10]!r}")
        tok = m.group()
        if not (tok[0].isspace() or tok[0] == "#"):
            tokens.append((tok, line))
        line += tok.count("\n")
        pos = m.end()
    return tokens


def _unquote(tok: str) -> str:
    if tok[:1] in "\"'":
        return re.sub(r"\\(.)", r"\1", tok[1:-1])
    return tok


def _parse_text(tokens, i: int, depth: int, close: str | None, where: str):
    """Protobuf text format -> [(key, value)], value a string or a nested list. Bounded in depth."""
    if depth > MAX_PROTOTXT_DEPTH:
        raise VGGError(f"{where}:{tokens[i - 1][1]}: nested deeper than {MAX_PROTOTXT_DEPTH} levels")
    entries = []
    while i < len(tokens):
        tok, line = tokens[i]
        if tok in ("}", ">"):
            if close != tok:
                raise VGGError(f"{where}:{line}: unexpected {tok!r}")
            return entries, i + 1
        if tok in (",", ";"):
            i += 1
            continue
        if not re.fullmatch(r"[A-Za-z_][\w.]*|\[[\w./]+\]", tok):
            raise VGGError(f"{where}:{line}: expected a field name, got {tok!r}")
        i += 1
        if i < len(tokens) and tokens[i][0] == ":":
            i += 1
        if i >= len(tokens):
            raise VGGError(f"{where}:{line}: field {tok} has no value")
        value_tok = tokens[i][0]
        if value_tok in ("{", "<"):
            value, i = _parse_text(tokens, i + 1, depth + 1, "}" if value_tok == "{" else ">", where)
            entries.append((tok, value))
        elif value_tok == "[":  # a list of scalars or messages
            i += 1
            while i < len(tokens) and tokens[i][0] != "]":
                if tokens[i][0] in ("{", "<"):
                    value, i = _parse_text(
                        tokens, i + 1, depth + 1, "}" if tokens[i][0] == "{" else ">", where
                    )
                    entries.append((tok, value))
                elif tokens[i][0] != ",":
                    entries.append((tok, _unquote(tokens[i][0])))
                    i += 1
                else:
                    i += 1
            i += 1
        else:
            value = _unquote(value_tok)
            i += 1
            while i < len(tokens) and tokens[i][0][:1] in "\"'" and value_tok[:1] in "\"'":
                value += _unquote(tokens[i][0])  # adjacent string literals concatenate
                i += 1
            entries.append((tok, value))
    if close is not None:
        raise VGGError(f"{where}: ends inside a {{...}} block (missing {close!r})")
    return entries, i


def read_prototxt(path) -> list[tuple[str, str]]:
    """The (name, type) of every layer of a ``.prototxt`` net definition, in order. Only names and types
    are read: the weights file alone defines the net's shapes."""
    path = Path(path)
    if not path.is_file():
        raise VGGError(f"prototxt not found: {path}")
    if path.stat().st_size > MAX_PROTOTXT_BYTES:
        raise VGGError(f"{path}: over the {MAX_PROTOTXT_BYTES}-byte limit for a prototxt")
    text = path.read_bytes().decode("utf-8", errors="replace")
    entries, _ = _parse_text(_tokens(text, str(path)), 0, 0, None, str(path))
    layers = []
    for key, value in entries:
        if key not in ("layer", "layers") or not isinstance(value, list):
            continue
        fields = dict((k, v) for k, v in value if isinstance(v, str))
        if any(k == "layer" for k, _ in value):
            raise VGGError(
                f"{path}: a V0 (2013) net definition; convert it with Caffe's upgrade_net_proto_text"
            )
        layers.append((fields.get("name", ""), fields.get("type", "")))
    if not layers:
        raise VGGError(f"{path}: no 'layer' or 'layers' blocks: not a Caffe net definition")
    return layers


def _apply_prototxt(layers: list[CaffeLayer], proto: list[tuple[str, str]], where: str, proto_where: str):
    """The net as the prototxt defines it, with weights taken from the model by layer name (what Caffe
    does: weights of layers the prototxt does not name are ignored)."""
    by_name = {}
    for layer in layers:
        if layer.blobs:
            by_name.setdefault(layer.name, layer)
    out = []
    for name, type_name in proto:
        kind = _canon(type_name)
        source = by_name.get(name)
        if kind in (CONV, FC):
            if source is None:
                raise VGGError(f"{proto_where}: layer {name} ({type_name}) has no weights in {where}")
            if _canon(source.type) != kind:
                raise VGGError(
                    f"{proto_where}: layer {name} is a {type_name} layer, but {where} holds a "
                    f"{source.type} layer of that name"
                )
            out.append(CaffeLayer(name, source.type, source.blobs, source.transpose))
        else:
            out.append(CaffeLayer(name, type_name))
    return out


# -- import ---------------------------------------------------------------------------------------
def import_caffe(path, prototxt=None, classes=None) -> tuple[VGG, WeightsMeta]:
    """Load a Caffe VGG (the original release or any Table 1 net) into our model. Returns (model, meta)
    like :func:`vggnet.models.import_torchvision`; the preprocessing is Caffe's (BGR, 0-255, mean pixel).

    `prototxt`, optional, defines the layer order and names as Caffe would use them; without it the
    weights file's own layer list is used. `classes` default to the ImageNet wnids in sorted order
    (Caffe's output order) for a 1000-class net, else "0".."N-1".
    """
    net = read_caffemodel(path)
    layers = net.layers
    if prototxt is not None:
        layers = _apply_prototxt(layers, read_prototxt(prototxt), str(path), str(prototxt))
    kwargs, weights = match_table1(layers, str(path))
    model = model_from_spec(ArchSpec(**kwargs))
    named = model.weight_layers()
    with torch.no_grad():
        for name, (weight, bias) in weights.items():
            named[name].weight.copy_(torch.from_numpy(weight).view_as(named[name].weight))
            named[name].bias.copy_(torch.from_numpy(bias))
    n = kwargs["num_classes"]
    if classes is None:
        classes = default_classes(n)
    classes = list(classes)
    if len(classes) != n:
        raise VGGError(f"{len(classes)} class names given for a net with {n} outputs")
    source = dict(kind="caffe", file=str(path), format=net.format)
    if net.name:
        source["net_name"] = net.name
    if prototxt is not None:
        source["prototxt"] = str(prototxt)
    return model, WeightsMeta(model.spec, classes, PRESETS["caffe"], source=source)
