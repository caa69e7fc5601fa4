import struct

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny
from vggnet.data.imagenet import imagenet_classes
from vggnet.data.transforms import Normalizer
from vggnet.errors import VGGError
from vggnet.models import PRESETS, caffe, create_model
from vggnet.models.caffe import (
    CaffeLayer,
    caffe_layers,
    decode_caffemodel,
    encode_caffemodel,
    export_caffe,
    import_caffe,
    read_caffemodel,
)


# -- an encoder independent of the module's: byte by byte, as the protobuf wire format reads ----------
def varint(n):
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        out += bytes([low | (0x80 if n else 0)])
        if not n:
            return out


def key(field, wire):
    return varint(field << 3 | wire)


def ld(field, payload):  # length-delimited
    return key(field, 2) + varint(len(payload)) + payload


def same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def uint8_batch(n=2, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8))


# -- round trips ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config,fmt,width",
    [
        ("A", "V1", 1 / 16),
        ("A", "V2", 1 / 16),
        ("C", "V1", 1 / 16),
        ("C", "V2", 1 / 16),
        ("A-LRN", "V2", 1 / 16),
        ("E", "V1", 1 / 16),
        ("D", "V2", 0.1),
    ],
)  # 0.1: 6, 13, 26, 51 channels, not 6x
def test_round_trip_gives_identical_tensors(tmp_path, config, fmt, width):
    model = tiny(config, width=width)
    path = export_caffe(model, tmp_path / "net.caffemodel", format=fmt)
    loaded, meta = import_caffe(path)
    assert loaded.arch == config
    assert loaded.spec.replace(width=0) == model.spec.replace(width=0)
    assert loaded.spec.width == pytest.approx(width, abs=1e-3)
    assert same_state(model, loaded)
    assert meta.source == dict(kind="caffe", file=str(path), format=fmt, net_name=f"VGG_{config}")
    assert meta.preprocessing == PRESETS["caffe"]
    assert meta.classes == ["0", "1", "2", "3", "4"]


def test_v1_writes_the_release_legacy_shapes_and_v2_blob_shapes(tmp_path):
    model = tiny("A")
    v1 = read_caffemodel(export_caffe(model, tmp_path / "v1.caffemodel", format="V1"))
    v2 = read_caffemodel(export_caffe(model, tmp_path / "v2.caffemodel", format="V2"))
    fc6_v1 = next(layer for layer in v1.layers if layer.name == "fc6")
    fc6_v2 = next(layer for layer in v2.layers if layer.name == "fc6")
    assert (v1.format, v2.format) == ("V1", "V2")
    assert fc6_v1.blobs[0].shape == (1, 1, 32, 32) and fc6_v1.blobs[1].shape == (1, 1, 1, 32)
    assert fc6_v2.blobs[0].shape == (32, 32) and fc6_v2.blobs[1].shape == (32,)
    assert [layer.type for layer in v1.layers][:2] == ["Convolution", "Convolution"]


def test_imported_net_reads_bgr_through_the_normalizer(tmp_path):
    """The Caffe weights see BGR, 0-255, minus the mean pixel: feeding our RGB uint8 batch through the
    metadata's Normalizer must give the original net's output on that BGR input."""
    model = tiny("A").eval()
    loaded, meta = import_caffe(export_caffe(model, tmp_path / "net.caffemodel", format="V1"))
    loaded.eval()
    rgb = uint8_batch()
    bgr_minus_mean = rgb.float().flip(1) - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    expected = model(bgr_minus_mean)
    got = loaded(Normalizer(meta.preprocessing)(rgb))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    # The check has teeth: the same net fed RGB order gives something else.
    rgb_minus_mean = rgb.float() - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    assert not torch.allclose(loaded(rgb_minus_mean), expected, rtol=1e-3, atol=1e-3)


def test_export_of_an_rgb_net_flips_conv1_1(tmp_path):
    """A net trained on our RGB input, exported with its preprocessing, behaves in Caffe's BGR convention."""
    model = tiny("B").eval()
    path = export_caffe(model, tmp_path / "net.caffemodel", preprocessing=PRESETS["vggnet"])
    loaded, meta = import_caffe(path)
    loaded.eval()
    rgb = uint8_batch(seed=1)
    expected = model(Normalizer(PRESETS["vggnet"])(rgb))
    torch.testing.assert_close(loaded(Normalizer(meta.preprocessing)(rgb)), expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(loaded.features[0].weight, model.features[0].weight.flip(1))


def test_export_refuses_what_caffe_cannot_express(tmp_path):
    with pytest.raises(VGGError, match="cannot be expressed"):
        export_caffe(tiny("A"), tmp_path / "a.caffemodel", preprocessing=PRESETS["torchvision"])
    with pytest.raises(VGGError, match="batch normalisation"):
        export_caffe(tiny("A", batch_norm=True), tmp_path / "b.caffemodel")
    with pytest.raises(VGGError, match="unknown Caffe format"):
        export_caffe(tiny("A"), tmp_path / "c.caffemodel", format="V3")
    assert not list(tmp_path.iterdir())


def test_a_1000_class_net_gets_the_imagenet_wnids(tmp_path):
    model = create_model("A", 1000, width=1 / 16, fc_dim=8, crop_size=32)
    _, meta = import_caffe(export_caffe(model, tmp_path / "net.caffemodel"))
    assert meta.classes == imagenet_classes()
    _, meta = import_caffe(tmp_path / "net.caffemodel", classes=[f"c{i}" for i in range(1000)])
    assert meta.classes[1] == "c1"
    with pytest.raises(VGGError, match="3 class names given for a net with 1000 outputs"):
        import_caffe(tmp_path / "net.caffemodel", classes=["a", "b", "c"])


# -- the decoder against hand-assembled bytes -------------------------------------------------------
def test_decoder_reads_packed_unpacked_double_and_legacy_blobs():
    values = [1.5, -2.25, 3.0, 0.125, -7.0, 6.5]
    packed = struct.pack("<6f", *values)
    unpacked = b"".join(key(5, 5) + struct.pack("<f", v) for v in values)  # field 5, wire type 5, per value
    doubles = ld(8, struct.pack("<6d", *values))
    shape_packed = ld(7, ld(1, varint(2) + varint(3)))  # BlobShape dims packed
    shape_unpacked = ld(7, key(1, 0) + varint(3) + key(1, 0) + varint(2))  # dims one by one
    legacy = key(1, 0) + varint(1) + key(2, 0) + varint(1) + key(3, 0) + varint(2) + key(4, 0) + varint(3)
    diff = b"".join(key(6, 5) + struct.pack("<f", 9.0) for _ in range(6))  # gradients: skipped
    blobs = [
        shape_packed + ld(5, packed),
        unpacked + diff + shape_unpacked,  # fields in any order
        legacy + doubles,
        ld(5, packed[:12]) + ld(5, packed[12:]) + shape_packed,
    ]  # a packed array split in two
    layer = ld(1, b"conv1_1") + ld(2, b"Convolution") + b"".join(ld(7, b) for b in blobs)
    net = decode_caffemodel(ld(1, b"hand") + ld(100, layer))
    assert (net.name, net.format) == ("hand", "V2")
    (only,) = net.layers
    assert (only.name, only.type) == ("conv1_1", "Convolution")
    want = np.array(values, np.float32)
    np.testing.assert_array_equal(only.blobs[0], want.reshape(2, 3))
    np.testing.assert_array_equal(only.blobs[1], want.reshape(3, 2))
    np.testing.assert_array_equal(only.blobs[2], want.reshape(1, 1, 2, 3))
    np.testing.assert_array_equal(only.blobs[3], want.reshape(2, 3))
    assert all(b.dtype == np.float32 for b in only.blobs)


def test_decoder_reads_v1_layers_and_the_transpose_flag():
    w = np.arange(6, dtype=np.float32)
    blob_w = (
        key(1, 0)
        + varint(1)
        + key(2, 0)
        + varint(1)
        + key(3, 0)
        + varint(3)
        + key(4, 0)
        + varint(2)
        + ld(5, w.tobytes())
    )
    layer = ld(4, b"fc6") + key(5, 0) + varint(14) + ld(6, blob_w) + ld(17, key(6, 0) + varint(1))
    net = decode_caffemodel(ld(2, layer) + ld(2, ld(4, b"relu6") + key(5, 0) + varint(18)))
    assert net.format == "V1"
    assert [(layer.name, layer.type) for layer in net.layers] == [("fc6", "InnerProduct"), ("relu6", "ReLU")]
    assert net.layers[0].transpose and net.layers[0].blobs[0].shape == (1, 1, 3, 2)


def test_transposed_inner_product_weights_are_transposed_on_import(tmp_path):
    layers = caffe_layers(tiny("A"))
    fc7 = next(layer for layer in layers if layer.name == "fc7")
    expected = fc7.blobs[0].copy()
    fc7.blobs[0], fc7.transpose = np.ascontiguousarray(expected.T), True
    path = tmp_path / "t.caffemodel"
    path.write_bytes(encode_caffemodel(layers, "V2"))
    loaded, _ = import_caffe(path)
    np.testing.assert_array_equal(loaded.weight_layers()["fc7"].weight.detach().numpy(), expected)


# -- files that are not (usable) caffemodels ---------------------------------------------------------
def test_files_that_are_not_caffemodels(tmp_path):
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    with pytest.raises(VGGError, match="empty file"):
        import_caffe(empty)
    png = tmp_path / "image.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(png)
    with pytest.raises(VGGError, match=r"image\.png: .*byte \d+"):
        import_caffe(png)
    rng = np.random.default_rng(0)
    for seed in range(20):
        noise = tmp_path / f"noise{seed}.caffemodel"
        noise.write_bytes(rng.integers(0, 256, 64 + seed, dtype=np.uint8).tobytes())
        with pytest.raises(VGGError, match="noise"):
            import_caffe(noise)
    with pytest.raises(VGGError, match="not found"):
        import_caffe(tmp_path / "missing.caffemodel")


def test_a_truncated_file_names_the_byte(tmp_path):
    data = (export_caffe(tiny("A"), tmp_path / "net.caffemodel")).read_bytes()
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VGGError, match=rf"truncated at byte {len(data) // 2} "):
        import_caffe(cut)


def test_bounds(tmp_path, monkeypatch):
    path = export_caffe(tiny("A"), tmp_path / "net.caffemodel")
    monkeypatch.setattr(caffe, "MAX_FILE_BYTES", 1000)
    with pytest.raises(VGGError, match="over the 1000-byte limit"):
        import_caffe(path)
    # A shape that claims more values than the file stores is refused before anything is allocated.
    huge = ld(7, ld(1, varint(1 << 40) + varint(1 << 40))) + ld(5, struct.pack("<2f", 1, 2))
    with pytest.raises(VGGError, match=r"layer x blob 0: shape \(1099511627776, 1099511627776\) holds"):
        decode_caffemodel(ld(100, ld(1, b"x") + ld(2, b"Convolution") + ld(7, huge)))
    # A length that runs past its enclosing message.
    with pytest.raises(VGGError, match=r"truncated at byte 8 \(field 7 starting at byte 6"):
        decode_caffemodel(ld(100, ld(1, b"x") + key(7, 2) + varint(50)))
    # An unpacked float whose 4 bytes run past the end of its blob.
    cut_run = key(5, 5) + struct.pack("<f", 1.0) + key(5, 5) + b"\x00\x00"
    with pytest.raises(VGGError, match=r"truncated at byte \d+ \(a fixed-width value"):
        decode_caffemodel(ld(100, ld(1, b"x") + ld(7, cut_run)))
    with pytest.raises(VGGError, match="V0 format"):
        decode_caffemodel(ld(2, ld(1, ld(1, b"conv1") + ld(2, b"conv"))))


def _d_layers_with(change):
    layers = caffe_layers(tiny("D"))
    change(layers)
    return layers


def test_layers_that_match_no_table1_config_name_the_first_offender(tmp_path):
    def extra_conv3_4(layers):  # D with a fourth conv in stage 3
        i = next(i for i, layer in enumerate(layers) if layer.name == "conv3_3")
        w = np.zeros((16, 16, 3, 3), np.float32)
        layers.insert(i + 1, CaffeLayer("conv3_4", "Convolution", [w, np.zeros(16, np.float32)]))

    def conv3_3_5x5(layers):
        layer = next(layer for layer in layers if layer.name == "conv3_3")
        layer.blobs[0] = np.zeros((16, 16, 5, 5), np.float32)

    path = tmp_path / "bad.caffemodel"
    path.write_bytes(encode_caffemodel(_d_layers_with(extra_conv3_4)))
    with pytest.raises(
        VGGError, match=r"layer conv5_1: 3x3 conv, 32 -> 32 channels; expected conv4_4 .* of config E"
    ):
        import_caffe(path)
    path.write_bytes(encode_caffemodel(_d_layers_with(conv3_3_5x5), "V1"))
    with pytest.raises(
        VGGError,
        match=r"layer conv3_3: 5x5 conv, 16 -> 16 channels; expected conv3_3 \(1x1 conv.*"
        r"config C or conv3_3 \(3x3 conv.*config D",
    ):
        import_caffe(path)


def test_fully_connected_layers_are_checked(tmp_path):
    path = tmp_path / "bad.caffemodel"
    layers = caffe_layers(tiny("A"))
    path.write_bytes(encode_caffemodel(layers[:-1]))
    with pytest.raises(VGGError, match=r"2 fully connected layers, expected 3"):
        import_caffe(path)
    fc6 = next(layer for layer in layers if layer.name == "fc6")
    fc6.blobs[0] = np.zeros((32, 30), np.float32)
    path.write_bytes(encode_caffemodel(layers))
    with pytest.raises(VGGError, match=r"layer fc6: 30 inputs, not 32 pool5 channels"):
        import_caffe(path)
    layers = caffe_layers(tiny("A"))
    layers[0].blobs = layers[0].blobs[:1]
    path.write_bytes(encode_caffemodel(layers))
    with pytest.raises(VGGError, match=r"layer conv1_1: 1 blobs, expected 2"):
        import_caffe(path)


# -- prototxt -------------------------------------------------------------------------------------
V1_PROTOTXT = """name: "tiny"   # a V1 deploy definition, as the release shipped
input: "data"
input_dim: 1 input_dim: 3 input_dim: 32 input_dim: 32
layers { bottom: "data" top: "conv1_1" name: "conv1_1" type: CONVOLUTION
  convolution_param { num_output: 4 pad: 1 kernel_size: 3 } }
layers { bottom: "conv1_1" top: "conv1_1" name: "relu1_1" type: RELU }
layers { bottom: "conv1_1" top: "norm1" name: "norm1" type: LRN lrn_param { local_size: 5 alpha: 0.0005 } }
"""


def test_prototxt_defines_order_and_names(tmp_path):
    model = tiny("A-LRN")
    layers = [
        layer for layer in caffe_layers(model) if layer.type != "LRN"
    ]  # weights only, as some tools write
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(encode_caffemodel(layers, "V1"))
    loaded, _ = import_caffe(weights)
    assert loaded.arch == "A"  # nothing in the weights says LRN
    v1_type = {"Convolution": "CONVOLUTION", "InnerProduct": "INNER_PRODUCT"}
    rest = "".join(f'layers {{ name: "{layer.name}" type: {v1_type[layer.type]} }}\n' for layer in layers[1:])
    proto = tmp_path / "deploy.prototxt"
    proto.write_text(V1_PROTOTXT + rest)
    loaded, meta = import_caffe(weights, prototxt=proto)
    assert loaded.arch == "A-LRN" and meta.source["prototxt"] == str(proto)
    assert same_state(model, loaded)
    # V2 syntax; a layer the weights file lacks is an error naming it.
    proto.write_text(
        'layer {\n  name: "conv1_1"\n  type: "Convolution"\n}\n'
        'layer { name: "conv9_9" type: "Convolution" }\n'
    )
    with pytest.raises(VGGError, match=r"deploy.prototxt: layer conv9_9 \(Convolution\) has no weights"):
        import_caffe(weights, prototxt=proto)
    proto.write_text('layer { name: "conv1_1" type: "Convolution" \n')
    with pytest.raises(VGGError, match="missing"):
        import_caffe(weights, prototxt=proto)
