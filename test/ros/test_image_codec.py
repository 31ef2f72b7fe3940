"""Tests for ros3d_agent.ros.image_codec against real sensor_msgs messages (no rclpy.init needed).

Compressed payloads are also built here by hand (cv2.imencode + the ConfigHeader layout of
compressed_depth_image_transport), so the reader is checked against the real wire layout and not
only against our own writer.
"""

from __future__ import annotations

import array
import struct
import sys

import cv2
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image

from ros3d_agent.ros.image_codec import (
    SUPPORTED_ENCODINGS,
    ImageCodecError,
    compressed_to_depth_m,
    compressed_to_numpy,
    image_to_depth_m,
    image_to_numpy,
    image_to_rgb,
    numpy_to_compressed,
    numpy_to_image,
)

ALL_ENCODINGS = sorted(SUPPORTED_ENCODINGS)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _sample(encoding: str, h: int = 5, w: int = 7, seed: int = 0) -> np.ndarray:
    """Random array spanning the dtype's range, shaped as the encoding expects."""
    dtype, channels = SUPPORTED_ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 1e3).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def _raw_image(arr: np.ndarray, encoding: str, *, pad: int = 0, bigendian: bool = False) -> Image:
    """Hand-build an Image the way a foreign driver might: explicit byte order and row padding."""
    wire = arr.astype(arr.dtype.newbyteorder(">" if bigendian else "<"))
    row = wire.reshape(arr.shape[0], -1).view(np.uint8)
    padded = np.full((arr.shape[0], row.shape[1] + pad), 0xAB, dtype=np.uint8)
    padded[:, : row.shape[1]] = row
    msg = Image()
    msg.height, msg.width = arr.shape[0], arr.shape[1]
    msg.encoding = encoding
    msg.is_bigendian = int(bigendian)
    msg.step = padded.shape[1]
    msg.data = padded.tobytes()
    return msg


def _smooth_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    """Gradient image with distinct channels: JPEG-friendly, and a channel swap is obvious."""
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 40)]).astype(np.uint8)


def _roundtrip(msg):
    return deserialize_message(serialize_message(msg), type(msg))


# ---------------------------------------------------------------------------- raw Image


def test_supported_encodings_is_the_documented_set():
    assert set(SUPPORTED_ENCODINGS) == {
        "rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16",
        "8UC1", "8UC3", "8UC4", "16UC1", "16SC1", "32FC1", "64FC1",
    }  # fmt: skip
    assert SUPPORTED_ENCODINGS["16UC1"] == (np.dtype(np.uint16), 1)
    assert SUPPORTED_ENCODINGS["bgra8"] == (np.dtype(np.uint8), 4)
    assert issubclass(ImageCodecError, ValueError)


@pytest.mark.parametrize("encoding", ALL_ENCODINGS)
def test_round_trip_every_encoding(encoding):
    arr = _sample(encoding)
    dtype, channels = SUPPORTED_ENCODINGS[encoding]
    msg = numpy_to_image(arr, encoding, frame_id="cam", stamp_ns=1_700_000_000_123_456_789)
    assert isinstance(msg, Image)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * channels * dtype.itemsize
    assert bool(msg.is_bigendian) == (sys.byteorder == "big")
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("cam", 1_700_000_000, 123_456_789)
    out = image_to_numpy(msg)
    assert out.dtype == dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("encoding", ALL_ENCODINGS)
def test_round_trip_through_cdr_serialization(encoding):
    arr = _sample(encoding, h=4, w=9, seed=1)
    msg = _roundtrip(numpy_to_image(arr, encoding, frame_id="base_link", stamp_ns=42))
    assert isinstance(msg.data, array.array)  # what a subscriber really gets
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("base_link", 0, 42)
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


def test_single_channel_accepts_trailing_axis_of_one():
    arr = _sample("mono8")
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(arr[:, :, None], "mono8")), arr)


@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "mono8", "16UC1", "16SC1", "32FC1", "64FC1"])
def test_padded_step_is_honoured(encoding):
    arr = _sample(encoding, seed=2)
    msg = _roundtrip(_raw_image(arr, encoding, pad=5))
    assert msg.step > msg.width * SUPPORTED_ENCODINGS[encoding][1] * SUPPORTED_ENCODINGS[encoding][0].itemsize
    out = image_to_numpy(msg)
    np.testing.assert_array_equal(out, arr)
    np.testing.assert_array_equal(image_to_numpy(msg, copy=True), arr)


def test_big_endian_16uc1_is_byteswapped():
    mm = np.array([[1, 258, 1000], [65535, 0, 4660]], dtype=np.uint16)
    msg = _raw_image(mm, "16UC1", bigendian=True)
    assert bytes(msg.data[:2]) == b"\x00\x01"  # really big-endian on the wire
    out = image_to_numpy(msg)
    assert out.dtype == np.dtype(np.uint16) and out.dtype.isnative
    np.testing.assert_array_equal(out, mm)
    np.testing.assert_array_equal(image_to_depth_m(msg), mm.astype(np.float32) / np.float32(1000))
    msg.is_bigendian = 0  # same bytes read little-endian must differ: proves the flag is used
    assert image_to_numpy(msg)[0, 0] == 256


def test_big_endian_32fc1_with_padding():
    depth = np.array([[0.5, 1.25], [3.0, -2.0]], dtype=np.float32)
    np.testing.assert_array_equal(image_to_numpy(_raw_image(depth, "32FC1", pad=3, bigendian=True)), depth)


def test_zero_copy_result_is_read_only_and_copy_is_independent():
    msg = numpy_to_image(_sample("rgb8"), "rgb8")
    view = image_to_numpy(msg)
    owned = image_to_numpy(msg, copy=True)
    assert not view.flags.writeable
    assert owned.flags.writeable and owned.flags.c_contiguous
    before = owned[0, 0, 0]
    msg.data[0] = (int(msg.data[0]) + 1) % 256
    assert view[0, 0, 0] == msg.data[0]  # documented: the default result aliases msg.data
    assert owned[0, 0, 0] == before
    with pytest.raises(ValueError):
        view[0, 0, 0] = 1


def test_plain_python_duck_typed_message():
    class Duck:
        height, width, encoding, is_bigendian, step = 1, 2, "mono8", 0, 2
        data = [7, 9]

    np.testing.assert_array_equal(image_to_numpy(Duck()), [[7, 9]])


def test_bgr8_to_rgb_channel_order_on_known_pixel():
    bgr = np.zeros((3, 4, 3), dtype=np.uint8)
    bgr[1, 2] = (10, 20, 30)  # B, G, R
    rgb = image_to_rgb(_roundtrip(numpy_to_image(bgr, "bgr8")))
    assert rgb.dtype == np.uint8 and rgb.shape == (3, 4, 3)
    assert rgb[1, 2].tolist() == [30, 20, 10]
    assert rgb.flags.writeable and rgb.flags.c_contiguous


@pytest.mark.parametrize(
    ("encoding", "pixel", "expected"),
    [
        ("rgb8", (1, 2, 3), (1, 2, 3)),
        ("rgba8", (1, 2, 3, 4), (1, 2, 3)),
        ("bgra8", (1, 2, 3, 4), (3, 2, 1)),
        ("mono8", 77, (77, 77, 77)),
        ("8UC1", 5, (5, 5, 5)),
        ("mono16", 65535, (255, 255, 255)),
        ("mono16", 257 * 100, (100, 100, 100)),
    ],
)
def test_image_to_rgb_conversions(encoding, pixel, expected):
    dtype, channels = SUPPORTED_ENCODINGS[encoding]
    arr = np.zeros((2, 3) if channels == 1 else (2, 3, channels), dtype=dtype)
    arr[1, 1] = pixel
    rgb = image_to_rgb(numpy_to_image(arr, encoding))
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[1, 1].tolist()) == expected
    assert rgb[0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize(("encoding", "needle"), [("8UC3", "channel order"), ("32FC1", "depth"), ("16UC1", "depth")])
def test_image_to_rgb_refuses_ambiguous_or_depth(encoding, needle):
    with pytest.raises(ImageCodecError, match=needle):
        image_to_rgb(numpy_to_image(_sample(encoding), encoding))


@pytest.mark.parametrize("encoding", ["16UC1", "mono16"])
def test_depth_millimetres_to_metres_exact(encoding):
    mm = np.array([[0, 1, 1234], [65535, 500, 999]], dtype=np.uint16)
    depth = image_to_depth_m(_roundtrip(numpy_to_image(mm, encoding)))
    assert depth.dtype == np.float32 and depth.shape == (2, 3)
    expected = np.array([[0.0, 0.001, 1.234], [65.535, 0.5, 0.999]]).astype(np.float32)
    np.testing.assert_array_equal(depth, expected)


def test_depth_32fc1_invalid_values_become_zero():
    raw = np.array([[np.nan, np.inf, -np.inf], [-1.5, 0.0, 2.5]], dtype=np.float32)
    msg = numpy_to_image(raw, "32FC1")
    depth = image_to_depth_m(msg)
    np.testing.assert_array_equal(depth, [[0, 0, 0], [0, 0, 2.5]])
    assert depth.dtype == np.float32 and depth.flags.writeable
    assert np.isnan(image_to_numpy(msg)[0, 0])  # the message itself was not modified


def test_depth_64fc1_is_metres():
    np.testing.assert_array_equal(
        image_to_depth_m(numpy_to_image(np.array([[1.5, np.nan]]), "64FC1")), np.array([[1.5, 0]], np.float32)
    )


def test_depth_refuses_colour():
    with pytest.raises(ImageCodecError, match="not a depth encoding"):
        image_to_depth_m(numpy_to_image(_sample("rgb8"), "rgb8"))


# ---------------------------------------------------------------------------- malformed Image


def _good_msg() -> Image:
    return numpy_to_image(_sample("rgb8", h=4, w=6), "rgb8")


def test_truncated_data_is_rejected():
    msg = _good_msg()
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(ImageCodecError, match=r"needs 72 bytes of data, got 71"):
        image_to_numpy(msg)


def test_size_fields_larger_than_data_are_rejected():
    msg = _good_msg()
    msg.height = 5
    with pytest.raises(ImageCodecError, match=r"needs 90 bytes"):
        image_to_numpy(msg)


def test_step_smaller_than_row_is_rejected():
    msg = _good_msg()
    msg.step = 17
    with pytest.raises(ImageCodecError, match=r"step 17 is smaller than one row .*18 B"):
        image_to_numpy(msg)


@pytest.mark.parametrize("field", ["width", "height"])
def test_zero_size_is_rejected(field):
    msg = _good_msg()
    setattr(msg, field, 0)
    with pytest.raises(ImageCodecError, match="zero"):
        image_to_numpy(msg)


@pytest.mark.parametrize(
    ("encoding", "needle"),
    [("foo", "unknown"), ("", "empty"), ("yuv422", "YUV"), ("bayer_rggb8", "debayer"), ("rgb16", "unsupported")],
)
def test_unsupported_encoding_is_rejected_with_reason(encoding, needle):
    msg = _good_msg()
    msg.encoding = encoding
    with pytest.raises(ImageCodecError, match=needle) as info:
        image_to_numpy(msg)
    assert repr(encoding) in str(info.value) and "32FC1" in str(info.value)  # lists what is supported


@pytest.mark.parametrize(
    ("arr", "encoding", "needle"),
    [
        (np.zeros((2, 2), np.float64), "32FC1", "dtype float32"),
        (np.zeros((2, 2, 3), np.uint8), "mono8", "H x W array"),
        (np.zeros((2, 2), np.uint8), "rgb8", "H x W x 3"),
        (np.zeros((0, 4, 3), np.uint8), "rgb8", "zero size"),
        (np.zeros((2, 2), np.uint8), "nv12", "YUV"),
    ],
)
def test_numpy_to_image_validates(arr, encoding, needle):
    with pytest.raises(ImageCodecError, match=needle):
        numpy_to_image(arr, encoding)


def test_numpy_to_image_copies_header_by_value_and_rejects_ambiguity():
    src = numpy_to_image(np.zeros((1, 1), np.uint8), "mono8", frame_id="odom", stamp_ns=3_000_000_007)
    msg = numpy_to_image(np.zeros((1, 1), np.uint8), "mono8", header=src.header)
    src.header.frame_id = "changed"
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("odom", 3, 7)
    with pytest.raises(ImageCodecError, match="not both"):
        numpy_to_image(np.zeros((1, 1), np.uint8), "mono8", header=src.header, frame_id="x")


def test_numpy_to_image_accepts_non_native_byte_order():
    arr = np.array([[1, 2]], dtype=">u2")
    msg = numpy_to_image(arr, "16UC1")
    assert bytes(msg.data) == np.array([1, 2], dtype=np.uint16).tobytes()


# ---------------------------------------------------------------------------- CompressedImage


def test_jpeg_round_trip_within_tolerance():
    rgb = _smooth_rgb()
    msg = _roundtrip(numpy_to_compressed(rgb, "jpeg", frame_id="cam", stamp_ns=5))
    assert isinstance(msg, CompressedImage)
    assert msg.format == "rgb8; jpeg compressed bgr8"
    assert bytes(msg.data[:3]) == b"\xff\xd8\xff" and msg.header.frame_id == "cam"
    out = compressed_to_numpy(msg)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    err = np.abs(out.astype(int) - rgb.astype(int))
    assert err.mean() < 2.0 and err.max() <= 16


def test_jpeg_written_from_bgr_array():
    rgb = _smooth_rgb()
    msg = numpy_to_compressed(np.ascontiguousarray(rgb[:, :, ::-1]), "jpeg", encoding="bgr8")
    assert msg.format == "bgr8; jpeg compressed bgr8"
    assert np.abs(compressed_to_numpy(msg).astype(int) - rgb).mean() < 2.0  # still RGB out


def test_png_round_trip_exact():
    rgb = _sample("rgb8", h=9, w=11, seed=3)
    msg = _roundtrip(numpy_to_compressed(rgb, "png"))
    assert msg.format == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(compressed_to_numpy(msg), rgb)


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_png_grey_round_trip_exact(encoding):
    grey = _sample(encoding, h=6, w=5, seed=4)
    msg = numpy_to_compressed(grey, "png")
    assert msg.format == f"{encoding}; png compressed "  # upstream's trailing space for grey
    out = compressed_to_numpy(msg)
    assert out.dtype == grey.dtype
    np.testing.assert_array_equal(out, grey)


@pytest.mark.parametrize(("ext", "fmt"), [(".png", "png"), (".png", ""), (".jpg", "jpeg")])
def test_bare_format_from_foreign_publisher_is_rgb(ext, fmt):
    """A non-image_transport publisher: cv2.imencode of a BGR frame, format 'png'/'jpeg'."""
    rgb = _smooth_rgb()
    msg = CompressedImage()
    msg.format = fmt
    msg.data = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]))[1].tobytes()
    out = compressed_to_numpy(msg)
    assert np.abs(out.astype(int) - rgb).mean() < 2.0
    assert out[0, -1, 0] > 200 and out[0, -1, 2] < 80  # top-right is red, not blue


def _hand_made_depth_msg(fmt: str, inv: np.ndarray, quant_a: float = 0.0, quant_b: float = 0.0) -> CompressedImage:
    msg = CompressedImage()
    msg.format = fmt
    msg.data = struct.pack("<iff", 0, quant_a, quant_b) + cv2.imencode(".png", inv)[1].tobytes()
    return msg


def test_compressed_depth_png_16uc1_exact():
    mm = np.array([[0, 1, 1234], [9999, 10000, 500]], dtype=np.uint16)
    msg = _roundtrip(numpy_to_compressed(mm, "compressedDepth", frame_id="depth"))
    assert msg.format == "16UC1; compressedDepth png"
    assert bytes(msg.data[:12]) == struct.pack("<iff", 0, 0.0, 0.0)
    assert bytes(msg.data[12:20]) == PNG_MAGIC
    out = compressed_to_numpy(msg)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, mm)
    np.testing.assert_array_equal(compressed_to_depth_m(msg), mm.astype(np.float32) / np.float32(1000))


def test_compressed_depth_writer_applies_upstream_max_depth():
    mm = np.array([[10000, 10001, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(compressed_to_numpy(numpy_to_compressed(mm, "compressedDepth")), [[10000, 0, 0]])


@pytest.mark.parametrize("fmt", ["16UC1; compressedDepth png", "16UC1; compressedDepth", "mono16; compressedDepth png"])
def test_compressed_depth_reader_on_hand_made_16uc1(fmt):
    mm = np.arange(12, dtype=np.uint16).reshape(3, 4) * 997
    np.testing.assert_array_equal(compressed_to_numpy(_hand_made_depth_msg(fmt, mm)), mm)


def test_compressed_depth_reader_on_hand_made_32fc1():
    """Quantised inverse depth as compressed_depth_image_transport writes it (q=100, max 10 m)."""
    qa = np.float32(100.0) * np.float32(101.0)
    qb = np.float32(1.0) - qa / np.float32(10.0)
    inv = np.array([[0, 2000, 5000], [65535, 1111, 0]], dtype=np.uint16)
    msg = _hand_made_depth_msg("32FC1; compressedDepth png", inv, float(qa), float(qb))
    out = compressed_to_numpy(msg)
    assert out.dtype == np.float32
    expected = np.where(inv == 0, np.nan, qa / (inv.astype(np.float32) - qb)).astype(np.float32)
    np.testing.assert_array_equal(out, expected)  # NaN positions match too
    assert out[0, 1] == pytest.approx(10100 / (2000 - (1 - 1010)), rel=1e-6)
    np.testing.assert_array_equal(compressed_to_depth_m(msg), np.nan_to_num(expected, nan=0.0))


def test_compressed_depth_32fc1_round_trip_within_quantisation():
    depth = np.array([[0.3, 1.0, 2.5], [7.9, np.nan, 12.0], [-1.0, 0.0, np.inf]], dtype=np.float32)
    msg = numpy_to_compressed(depth, "compressedDepth")
    assert msg.format == "32FC1; compressedDepth png"
    fmt_enum, qa, qb = struct.unpack("<iff", bytes(msg.data[:12]))
    assert (fmt_enum, qa) == (0, 10100.0) and qb == pytest.approx(1 - 1010.0)
    out = compressed_to_depth_m(msg)
    valid = np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(out[~valid], 0)
    tol = depth[valid] ** 2 / 10100 * 1.01 + 1e-6  # one quantisation step of inverse depth
    assert np.all(np.abs(out[valid] - depth[valid]) <= tol)


@pytest.mark.parametrize(
    ("fmt", "data", "needle"),
    [
        ("jpeg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "could not decode|failed to decode"),
        ("png", PNG_MAGIC + b"\x00\x00\x00\rIHDR" + b"\x13" * 300, "could not decode|failed to decode"),
        ("jpeg", b"GIF89a" + b"\x00" * 100, "neither JPEG nor PNG"),
        ("jpeg", b"", "empty payload"),
        ("h264", b"\x00\x00\x00\x01", "not supported"),
        ("16UC1; compressedDepth png", b"\x00" * 8, "ConfigHeader"),
        ("16UC1; compressedDepth png", struct.pack("<iff", 0, 0, 0) + b"junkjunkjunk", "neither JPEG nor PNG"),
        ("32FC1; compressedDepth rvl", b"\x00" * 40, "rvl"),
        ("rgb8; compressedDepth png", b"\x00" * 40, "16UC1 or 32FC1"),
    ],
)
def test_corrupt_or_unsupported_compressed_payload(fmt, data, needle):
    msg = CompressedImage()
    msg.format = fmt
    msg.data = data
    with pytest.raises(ImageCodecError, match=needle):
        compressed_to_numpy(msg)


def test_truncated_jpeg_and_png_are_rejected():
    rgb = _smooth_rgb()
    for fmt in ("jpeg", "png"):
        msg = numpy_to_compressed(rgb, fmt)
        msg.data = bytes(msg.data)[: len(msg.data) // 2]
        with pytest.raises(ImageCodecError, match=fmt):
            compressed_to_numpy(msg)


def test_compressed_depth_with_8bit_png_is_rejected():
    msg = _hand_made_depth_msg("16UC1; compressedDepth png", np.zeros((2, 2), np.uint8))
    with pytest.raises(ImageCodecError, match="16-bit single-channel"):
        compressed_to_numpy(msg)


def test_compressed_to_depth_m_refuses_colour():
    with pytest.raises(ImageCodecError, match="not a depth image"):
        compressed_to_depth_m(numpy_to_compressed(_smooth_rgb(), "jpeg"))


@pytest.mark.parametrize(
    ("arr", "kwargs", "needle"),
    [
        (np.zeros((4, 4), np.uint16), {"fmt": "jpeg"}, "8-bit"),
        (np.zeros((4, 4, 4), np.uint8), {"fmt": "png", "encoding": "rgba8"}, "cannot png-compress"),
        (np.zeros((4, 4), np.uint8), {"fmt": "compressedDepth"}, "dtype uint16"),
        (np.zeros((4, 4), np.uint8), {"fmt": "webp"}, "unsupported compressed format"),
    ],
)
def test_numpy_to_compressed_validates(arr, kwargs, needle):
    with pytest.raises(ImageCodecError, match=needle):
        numpy_to_compressed(arr, **kwargs)


def test_module_does_not_import_rclpy_or_sensor_msgs():
    import os
    import subprocess
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    code = (
        "import sys, ros3d_agent.ros.image_codec as m; "
        "bad = [n for n in ('rclpy', 'sensor_msgs') if n in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
