"""sensor_msgs/Image and sensor_msgs/CompressedImage <-> numpy, without cv_bridge.

cv_bridge cannot be installed beside the PyPI ROS wheels (PyPI's ``cv-bridge`` is a broken ROS 1
port), so the package owns these conversions. The readers are duck-typed: they touch only the
message fields (``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``, ``data`` /
``format``, ``data``), so scene, model and test code can feed them anything shaped like a message,
and importing this module never pulls in rclpy or sensor_msgs. Only the writers
(:func:`numpy_to_image`, :func:`numpy_to_compressed`) import ``sensor_msgs``, inside the function.

Every malformed input raises :class:`ImageCodecError`, a ``ValueError``: a bad frame from a driver
is data, and the caller should be able to drop it without catching ``cv2.error`` or chasing a
``None`` returned from deep inside OpenCV.
"""

from __future__ import annotations

import struct
import sys
from types import MappingProxyType
from typing import Any, Final, Mapping

import cv2
import numpy as np

__all__ = [
    "ImageCodecError",
    "SUPPORTED_ENCODINGS",
    "image_to_numpy",
    "image_to_rgb",
    "image_to_depth_m",
    "numpy_to_image",
    "compressed_to_numpy",
    "compressed_to_depth_m",
    "numpy_to_compressed",
]


class ImageCodecError(ValueError):
    """An image message (or array) cannot be converted; the message says which field is wrong."""


_U8, _U16, _I16 = np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16)
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)

#: encoding -> (native numpy dtype of one channel, channels per pixel). The single source of truth:
#: readers, writers and tests all derive pixel sizes from it.
SUPPORTED_ENCODINGS: Final[Mapping[str, tuple[np.dtype, int]]] = MappingProxyType(
    {
        "rgb8": (_U8, 3),
        "bgr8": (_U8, 3),
        "rgba8": (_U8, 4),
        "bgra8": (_U8, 4),
        "mono8": (_U8, 1),
        "mono16": (_U16, 1),
        "8UC1": (_U8, 1),
        "8UC3": (_U8, 3),
        "8UC4": (_U8, 4),
        "16UC1": (_U16, 1),
        "16SC1": (_I16, 1),
        "32FC1": (_F32, 1),
        "64FC1": (_F64, 1),
    }
)

_HOST_BIGENDIAN: Final = sys.byteorder == "big"
_MM_PER_M: Final = np.float32(1000.0)
_COLOR_ENCODINGS: Final = frozenset({"rgb8", "bgr8", "rgba8", "bgra8"})
_DEPTH_MM_ENCODINGS: Final = frozenset({"16UC1", "mono16"})
_JPEG_MAGIC: Final = b"\xff\xd8\xff"
_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
# compressed_depth_image_transport's ConfigHeader, memcpy'd in front of the PNG:
# {int32 compressionFormat (INV_DEPTH = 0); float32 depthParam[2] (depthQuantA, depthQuantB)}.
# Written in host order by C++; every ROS host is little-endian, so read it as such.
_DEPTH_HEADER: Final = struct.Struct("<iff")
_INV_DEPTH: Final = 0


# --------------------------------------------------------------------------------------------
# Raw sensor_msgs/Image
# --------------------------------------------------------------------------------------------


def _layout(encoding: str) -> tuple[np.dtype, int]:
    """Look up an encoding, explaining the usual unsupported ones instead of just listing."""
    try:
        return SUPPORTED_ENCODINGS[encoding]
    except (KeyError, TypeError):
        pass
    name = str(encoding)
    low = name.lower()
    if low.startswith("bayer_"):
        hint = "it is a raw Bayer mosaic: debayer upstream (image_proc) and subscribe to image_color"
    elif low.startswith(("yuv", "uyvy", "yuyv", "nv12", "nv21", "nv24")):
        hint = "it is a packed/planar YUV format: ask the driver for rgb8/bgr8 or convert upstream"
    elif name == "":
        hint = "the encoding field is empty"
    else:
        hint = "unknown or unsupported encoding"
    supported = ", ".join(SUPPORTED_ENCODINGS)
    raise ImageCodecError(f"image encoding {name!r} is not supported ({hint}); supported: {supported}")


def _as_bytes_view(data: Any, what: str) -> np.ndarray:
    """1-D uint8 view of a message's ``data`` (array.array, bytes, memoryview, ndarray or list)."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        pass
    try:  # e.g. a plain list of ints from a hand-built duck-typed message
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ImageCodecError(f"{what}.data is not a byte buffer ({type(data).__name__})") from exc


def image_to_numpy(msg: Any, *, copy: bool = False) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into an ``H x W`` (1 channel) or ``H x W x C`` array.

    The dtype and channel order are the encoding's own (bgr8 stays BGR); use :func:`image_to_rgb`
    or :func:`image_to_depth_m` for normalised outputs.

    Zero-copy by default: unless the data has to be byte-swapped, the result is a **read-only view
    of ``msg.data``** (row padding is skipped with strides, so it may be non-contiguous). It stays
    valid as long as nobody mutates that buffer; rclpy hands every callback a fresh message, so
    that holds for subscribers. Pass ``copy=True`` to get an owned, writable, contiguous array when
    the message (or its buffer) may be reused.
    """
    encoding = msg.encoding
    dtype, channels = _layout(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageCodecError(f"{encoding} image has zero or negative size {width}x{height}")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageCodecError(
            f"{encoding} image step {step} is smaller than one row "
            f"({width} px x {channels} ch x {dtype.itemsize} B = {row_bytes} B)"
        )
    buf = _as_bytes_view(msg.data, "Image")
    needed = step * height
    if buf.size < needed:
        raise ImageCodecError(
            f"{encoding} {width}x{height} image with step {step} needs {needed} bytes of data, "
            f"got {buf.size} (truncated or mismatched size fields)"
        )
    rows = buf[:needed].reshape(height, step)[:, :row_bytes]
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    arr = rows.view(wire)
    if not wire.isnative:
        arr = arr.astype(dtype)  # byte-swapping copy: owned and writable
    elif copy:
        arr = arr.copy()
    else:
        arr.flags.writeable = False
    return arr.reshape(height, width, channels) if channels > 1 else arr.reshape(height, width)


def image_to_rgb(msg: Any) -> np.ndarray:
    """Colour image as an owned, contiguous ``H x W x 3`` uint8 RGB array (the model's input).

    Alpha is dropped, grey is replicated, mono16 is scaled to 8 bits like cv_bridge does. ``8UC3``
    and ``8UC4`` are refused: they carry no channel order, and guessing BGR vs RGB silently swaps
    red and blue.
    """
    encoding = msg.encoding
    _layout(encoding)
    if encoding not in _COLOR_ENCODINGS | {"mono8", "8UC1", "mono16"}:
        raise ImageCodecError(
            f"cannot convert {encoding!r} to RGB: "
            + (
                "it has no defined channel order; use image_to_numpy and pick the order"
                if encoding in ("8UC3", "8UC4")
                else "it is not a colour/grey image (depth? use image_to_depth_m)"
            )
        )
    arr = image_to_numpy(msg)
    if encoding in ("mono8", "8UC1"):
        return np.repeat(arr[:, :, None], 3, axis=2)
    if encoding == "mono16":
        grey = np.rint(arr / 257.0).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if encoding == "rgb8":
        return np.array(arr, dtype=np.uint8, order="C", copy=True)
    # cv2 swaps channels ~20x faster than materialising a reversed-stride numpy view.
    code = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB}[encoding]
    return cv2.cvtColor(np.ascontiguousarray(arr), code)


def _sanitize_depth(depth: np.ndarray) -> np.ndarray:
    """Zero out NaN, +-inf and negative depths in place: real sensors emit all of them for 'no return'."""
    invalid = ~np.isfinite(depth)
    invalid |= depth < 0
    depth[invalid] = 0.0
    return depth


def image_to_depth_m(msg: Any) -> np.ndarray:
    """Depth image as an owned ``H x W`` float32 array in metres, with 0 meaning 'invalid'.

    16UC1/mono16 are millimetres (the REP 118 integer convention, e.g. RealSense, Kinect), 32FC1
    and 64FC1 are metres. One invalid marker (0) keeps back-projection code free of NaN checks.
    """
    encoding = msg.encoding
    _layout(encoding)
    if encoding in _DEPTH_MM_ENCODINGS:  # integers: nothing to sanitise, 0 already means invalid
        return image_to_numpy(msg).astype(np.float32) / _MM_PER_M
    if encoding not in ("32FC1", "64FC1"):
        raise ImageCodecError(f"{encoding!r} is not a depth encoding (expected 16UC1, mono16, 32FC1 or 64FC1)")
    return _sanitize_depth(image_to_numpy(msg).astype(np.float32, copy=True))


def _check_array(arr: np.ndarray, encoding: str) -> np.ndarray:
    """Validate ``arr`` against ``encoding`` and return it native-endian and C-contiguous."""
    dtype, channels = _layout(encoding)
    if arr.dtype.newbyteorder("=") != dtype:
        raise ImageCodecError(f"{encoding} needs dtype {dtype}, got {arr.dtype} (cast explicitly)")
    if channels == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    want = "H x W" if channels == 1 else f"H x W x {channels}"
    if arr.ndim != (2 if channels == 1 else 3) or (channels > 1 and arr.shape[2] != channels):
        raise ImageCodecError(f"{encoding} needs an {want} array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageCodecError(f"{encoding} array has zero size {arr.shape}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _fill_header(dst: Any, header: Any, frame_id: str, stamp_ns: int | None) -> None:
    """Copy header fields by value so later edits to the caller's header do not leak into the message."""
    if header is not None:
        if frame_id or stamp_ns is not None:
            raise ImageCodecError("pass either header or frame_id/stamp_ns, not both")
        dst.frame_id = str(header.frame_id)
        dst.stamp.sec = int(header.stamp.sec)
        dst.stamp.nanosec = int(header.stamp.nanosec)
        return
    dst.frame_id = str(frame_id)
    if stamp_ns is not None:
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        if not 0 <= sec < 2**31:
            raise ImageCodecError(f"stamp_ns {stamp_ns} does not fit builtin_interfaces/Time")
        dst.stamp.sec, dst.stamp.nanosec = sec, nanosec


def numpy_to_image(
    arr: np.ndarray,
    encoding: str,
    header: Any = None,
    frame_id: str = "",
    stamp_ns: int | None = None,
) -> Any:
    """Build a ``sensor_msgs/Image`` (host byte order, unpadded rows) holding a copy of ``arr``.

    The dtype must match the encoding exactly (no silent float64 -> float32 or uint16 -> uint8
    casts, which would hide unit bugs). ``header`` is copied by value; otherwise ``frame_id`` and
    ``stamp_ns`` (nanoseconds since the epoch) fill it.
    """
    from sensor_msgs.msg import Image

    data = _check_array(np.asarray(arr), encoding)
    msg = Image()
    _fill_header(msg.header, header, frame_id, stamp_ns)
    msg.height, msg.width = int(data.shape[0]), int(data.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(_HOST_BIGENDIAN)
    msg.step = msg.width * data.itemsize * (data.shape[2] if data.ndim == 3 else 1)
    msg.data = data.tobytes()  # bytes -> array.array is a memcpy; assigning an ndarray is ~100x slower
    return msg


# --------------------------------------------------------------------------------------------
# sensor_msgs/CompressedImage
# --------------------------------------------------------------------------------------------


def _imdecode(buf: np.ndarray, what: str) -> np.ndarray:
    """cv2.imdecode restricted to JPEG/PNG, turning every failure into ImageCodecError."""
    head = buf[:8].tobytes()
    if not (head.startswith(_JPEG_MAGIC) or head.startswith(_PNG_MAGIC)):
        raise ImageCodecError(f"{what}: payload of {buf.size} bytes is neither JPEG nor PNG (starts {head!r})")
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageCodecError(f"{what}: OpenCV failed to decode {buf.size} bytes: {exc}") from exc
    if img is None or img.size == 0:
        raise ImageCodecError(f"{what}: could not decode {buf.size} bytes (corrupt or truncated payload)")
    return img


def _split_format(fmt: str) -> tuple[str, str]:
    """``"rgb8; jpeg compressed bgr8"`` -> ``("rgb8", "jpeg compressed bgr8")``; ``"png"`` -> ``("", "png")``."""
    encoding, sep, rest = fmt.partition(";")
    return (encoding.strip(), rest.strip()) if sep else ("", fmt.strip())


def _decode_compressed_depth(encoding: str, scheme: str, buf: np.ndarray, fmt: str) -> np.ndarray:
    """Undo compressed_depth_image_transport's PNG codec (12-byte ConfigHeader + 16-bit PNG)."""
    what = f"CompressedImage format {fmt!r}"
    variant = scheme[len("compresseddepth") :].strip() or "png"  # bare "compressedDepth" = old png-only
    if variant != "png":
        raise ImageCodecError(f"{what}: compressedDepth variant {variant!r} is not supported (only png)")
    if encoding not in ("16UC1", "mono16", "32FC1"):
        raise ImageCodecError(f"{what}: compressedDepth needs a 16UC1 or 32FC1 encoding prefix, got {encoding!r}")
    if buf.size <= _DEPTH_HEADER.size:
        raise ImageCodecError(f"{what}: {buf.size} bytes cannot hold the 12-byte ConfigHeader plus a PNG")
    _, quant_a, quant_b = _DEPTH_HEADER.unpack(buf[: _DEPTH_HEADER.size].tobytes())
    inv = _imdecode(buf[_DEPTH_HEADER.size :], what)
    if inv.ndim != 2 or inv.dtype != np.uint16:
        raise ImageCodecError(f"{what}: PNG must be 16-bit single-channel, got {inv.dtype} shape {inv.shape}")
    if encoding != "32FC1":
        return inv  # raw millimetres, exactly what the publisher had
    if not (np.isfinite(quant_a) and np.isfinite(quant_b)) or quant_a == 0.0:
        raise ImageCodecError(f"{what}: bad quantisation parameters A={quant_a} B={quant_b}")
    depth = np.full(inv.shape, np.nan, dtype=np.float32)
    valid = inv != 0
    depth[valid] = np.float32(quant_a) / (inv[valid].astype(np.float32) - np.float32(quant_b))
    return depth


def compressed_to_numpy(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` the way image_transport subscribers would.

    ``format`` may be a bare ``"jpeg"``/``"png"`` (or empty: the payload is sniffed), the
    compressed transport's ``"rgb8; jpeg compressed bgr8"``, or the compressedDepth transport's
    ``"16UC1; compressedDepth png"`` / ``"32FC1; compressedDepth png"``. Returns:

    * colour payloads: ``H x W x 3`` uint8 **RGB** (alpha dropped, 16-bit scaled to 8);
    * grey payloads: ``H x W`` uint8 or uint16 as stored (``mono16; png`` keeps 16 bits);
    * compressedDepth 16UC1: ``H x W`` uint16 millimetres; 32FC1: ``H x W`` float32 metres with
      NaN where the sender had no depth (what the ROS decoder yields; see
      :func:`compressed_to_depth_m` for the 0-means-invalid form).

    The RVL compressedDepth variant and other codecs raise :class:`ImageCodecError`.
    """
    fmt = str(msg.format)
    encoding, scheme = _split_format(fmt)
    scheme = scheme.lower()
    buf = _as_bytes_view(msg.data, "CompressedImage")
    if "compresseddepth" in scheme:
        return _decode_compressed_depth(encoding, scheme[scheme.index("compresseddepth") :], buf, fmt)
    codec = scheme.split()[0] if scheme else ""
    if codec not in ("", "jpeg", "jpg", "png"):
        raise ImageCodecError(
            f"CompressedImage format {fmt!r} is not supported (expected jpeg, png, '<enc>; jpeg compressed <enc>' "
            "or '<enc>; compressedDepth png')"
        )
    if buf.size == 0:
        raise ImageCodecError(f"CompressedImage format {fmt!r} has an empty payload")
    img = _imdecode(buf, f"CompressedImage format {fmt!r}")
    if img.ndim == 2:
        if encoding in _COLOR_ENCODINGS:  # grey JPEG from a colour topic: keep the promised RGB shape
            grey = img if img.dtype == np.uint8 else np.rint(img / 257.0).astype(np.uint8)
            return np.repeat(grey[:, :, None], 3, axis=2)
        return img
    if img.shape[2] not in (3, 4):
        raise ImageCodecError(f"CompressedImage format {fmt!r} decoded to {img.shape[2]} channels")
    # JPEG/PNG files hold true colours; imdecode hands them back BGR(A) whatever the ROS encoding was.
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB if img.shape[2] == 3 else cv2.COLOR_BGRA2RGB)
    return rgb if rgb.dtype == np.uint8 else np.rint(rgb / 257.0).astype(np.uint8)


def compressed_to_depth_m(msg: Any) -> np.ndarray:
    """Compressed depth as ``H x W`` float32 metres with 0 = invalid (same contract as image_to_depth_m).

    uint16 payloads (compressedDepth 16UC1, or a plain 16-bit PNG) are taken as millimetres.
    """
    arr = compressed_to_numpy(msg)
    if arr.ndim == 2 and arr.dtype == np.uint16:
        return arr.astype(np.float32) / _MM_PER_M
    if arr.ndim == 2 and arr.dtype == np.float32:
        return _sanitize_depth(arr)
    raise ImageCodecError(
        f"CompressedImage format {msg.format!r} decoded to {arr.dtype} shape {arr.shape}, not a depth image"
    )


def _encode(ext: str, img: np.ndarray, params: list[int]) -> bytes:
    try:
        ok, out = cv2.imencode(ext, img, params)
    except cv2.error as exc:
        raise ImageCodecError(f"OpenCV failed to encode {ext}: {exc}") from exc
    if not ok:
        raise ImageCodecError(f"OpenCV failed to encode {ext} ({img.dtype} shape {img.shape})")
    return out.tobytes()


def _default_encoding(arr: np.ndarray, depth: bool) -> str:
    if depth:
        return "32FC1" if arr.dtype == np.float32 else "16UC1"
    if arr.ndim == 3:
        return "rgb8"  # the package's colour arrays are RGB (image_to_rgb, compressed_to_numpy)
    return "mono16" if arr.dtype == np.uint16 else "mono8"


def numpy_to_compressed(
    arr: np.ndarray,
    fmt: str = "jpeg",
    *,
    encoding: str | None = None,
    header: Any = None,
    frame_id: str = "",
    stamp_ns: int | None = None,
    jpeg_quality: int = 95,
    png_level: int = 3,
    depth_max: float = 10.0,
    depth_quantization: float = 100.0,
) -> Any:
    """Build a ``sensor_msgs/CompressedImage`` laid out exactly as the ROS image_transport plugins do.

    Used for tests, bag export and replay, so it mirrors the publishers bit for bit rather than
    inventing a format: ``fmt="jpeg"|"png"`` writes ``"<enc>; jpeg compressed bgr8"`` (colour) or
    ``"<enc>; png compressed "`` (grey, trailing space as upstream); ``fmt="compressedDepth"``
    writes ``"<enc>; compressedDepth png"`` with the 12-byte ConfigHeader. ``encoding`` defaults to
    rgb8 for H x W x 3 uint8 (RGB order!), mono8/mono16 for grey, 16UC1 (mm) / 32FC1 (m) for depth.

    As upstream, compressedDepth zeroes depths beyond ``depth_max`` metres, and 32FC1 is stored as
    quantised inverse depth (``A = q (q + 1)``, ``B = 1 - A / depth_max``, ``q = depth_quantization``),
    so it is lossy; NaN, inf and non-positive depths are stored as 0 (invalid).
    """
    from sensor_msgs.msg import CompressedImage

    a = np.asarray(arr)
    scheme = fmt.strip().lower()
    if scheme in ("jpeg", "jpg", "png"):
        codec = "png" if scheme == "png" else "jpeg"
        enc = encoding or _default_encoding(a, depth=False)
        if enc not in ("rgb8", "bgr8", "mono8", "8UC1", "mono16", "16UC1"):
            raise ImageCodecError(f"cannot {codec}-compress encoding {enc!r} (use rgb8, bgr8, mono8 or png mono16)")
        if codec == "jpeg" and enc in ("mono16", "16UC1"):
            raise ImageCodecError("JPEG is 8-bit; compress 16-bit images with png or compressedDepth")
        data = _check_array(a, enc)
        if enc == "rgb8":
            data = np.ascontiguousarray(data[:, :, ::-1])
        target = "bgr8" if enc in _COLOR_ENCODINGS else ""
        params = (
            [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
            if codec == "jpeg"
            else [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)]
        )
        payload = _encode(".jpg" if codec == "jpeg" else ".png", data, params)
        format_str = f"{enc}; {codec} compressed {target}"
    elif scheme in ("compresseddepth", "compresseddepth png"):
        enc = encoding or _default_encoding(a, depth=True)
        if enc not in ("16UC1", "mono16", "32FC1"):
            raise ImageCodecError(f"compressedDepth needs 16UC1 or 32FC1 depth, got encoding {enc!r}")
        if not depth_max > 0:
            raise ImageCodecError(f"depth_max must be positive, got {depth_max}")
        depth = _check_array(a, enc)
        if enc == "32FC1":
            quant_a = np.float32(depth_quantization) * (np.float32(depth_quantization) + np.float32(1.0))
            quant_b = np.float32(1.0) - quant_a / np.float32(depth_max)
            valid = np.isfinite(depth) & (depth > 0) & (depth < np.float32(depth_max))
            inv = np.zeros(depth.shape, dtype=np.uint16)
            # float -> unsigned short truncates in C++; valid depths land in [1, 65535] after clipping
            inv[valid] = np.clip(quant_a / depth[valid] + quant_b, 1.0, 65535.0).astype(np.uint16)
            config = _DEPTH_HEADER.pack(_INV_DEPTH, float(quant_a), float(quant_b))
        else:
            inv = depth.copy()
            inv[inv > min(int(depth_max * 1000.0), 65535)] = 0  # upstream's max-depth filter, in mm
            config = _DEPTH_HEADER.pack(_INV_DEPTH, 0.0, 0.0)  # upstream zero-initialises the params
        payload = config + _encode(".png", inv, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
        format_str = f"{enc}; compressedDepth png"
    else:
        raise ImageCodecError(f"unsupported compressed format {fmt!r} (expected jpeg, png or compressedDepth)")

    msg = CompressedImage()
    _fill_header(msg.header, header, frame_id, stamp_ns)
    msg.format = format_str
    msg.data = payload
    return msg
