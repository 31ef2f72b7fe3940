"""Reader for ScanNet's binary ``.sens`` RGB-D stream (what a ScanNet download holds before export).

Users who downloaded only ``<scene>.sens`` otherwise have to run ScanNet's Python-2-era exporter first,
which writes every frame as a file (tens of GB per scene). Reading the stream directly lets the
ScanNet importer decode only the frames it keeps.

Layout (little-endian, as written by ScanNet's ``sensorData.h``)::

    header:  uint32 version (4) | uint64 n | n bytes sensor name
             4 × float32[16] intrinsic_color, extrinsic_color, intrinsic_depth, extrinsic_depth
             int32 color compression (-1 unknown, 0 raw, 1 png, 2 jpeg)
             int32 depth compression (-1 unknown, 0 raw_ushort, 1 zlib_ushort, 2 occi_ushort)
             uint32 color_width, color_height, depth_width, depth_height | float32 depth_shift
             uint64 num_frames
    frame:   float32[16] camera_to_world | uint64 timestamp_color, timestamp_depth
             uint64 color_bytes, depth_bytes | color payload | depth payload
    (IMU records follow the frames; they are not read.)

Opening a file indexes the frame offsets in one pass that seeks over the payloads, so random access
is cheap and memory stays flat whatever the scene length.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from numpy.typing import NDArray

from ..errors import FrameLoadError, SceneDirError

__all__ = ["SensFile", "SensFrame", "SensFormatError", "SENS_VERSION"]

SENS_VERSION = 4

_COLOR_COMPRESSION = {-1: "unknown", 0: "raw", 1: "png", 2: "jpeg"}
_DEPTH_COMPRESSION = {-1: "unknown", 0: "raw_ushort", 1: "zlib_ushort", 2: "occi_ushort"}
_FRAME_HEADER = struct.Struct("<16f4Q")  # pose, two timestamps, two payload sizes


class SensFormatError(SceneDirError):
    """A ``.sens`` file is truncated, of an unknown version, or uses an unsupported compression."""


@dataclass(frozen=True)
class SensFrame:
    """One raw frame of the stream: payloads still compressed, pose as stored (may hold ``-inf``)."""

    index: int
    camera_to_world: NDArray[np.float64]
    timestamp_color_us: int
    timestamp_depth_us: int
    color_data: bytes
    depth_data: bytes


def _read_exact(f: BinaryIO, n: int, path: Path, what: str) -> bytes:
    buf = f.read(n)
    if len(buf) != n:
        raise SensFormatError(f"{path}: truncated while reading {what} (wanted {n} bytes, got {len(buf)})")
    return buf


class SensFile:
    """Random access to the frames of one ``.sens`` file.

    Attributes mirror the header: ``K_color``/``K_depth`` (3×3, from the 4×4 calibration),
    ``color_hw``/``depth_hw``, ``depth_shift`` (depth units per metre, 1000 for ScanNet) and the
    compression names. ``len(sens)`` is the number of frames.

    Raises:
        SensFormatError: wrong version, truncated header or frame table, unknown compression.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SensFormatError(f"{self.path}: .sens file not found")
        with open(self.path, "rb") as f:
            self._read_header(f)
            self._offsets = self._index_frames(f)

    def _read_header(self, f: BinaryIO) -> None:
        p = self.path
        (version,) = struct.unpack("<I", _read_exact(f, 4, p, "version"))
        if version != SENS_VERSION:
            raise SensFormatError(f"{p}: unsupported .sens version {version} (expected {SENS_VERSION}); not a ScanNet stream?")
        (n,) = struct.unpack("<Q", _read_exact(f, 8, p, "sensor name length"))
        if n > 4096:
            raise SensFormatError(f"{p}: implausible sensor-name length {n}; corrupt header")
        self.sensor_name = _read_exact(f, n, p, "sensor name").decode("utf-8", "replace")
        mats = np.frombuffer(_read_exact(f, 4 * 16 * 4, p, "calibration"), dtype="<f4").astype(np.float64).reshape(4, 4, 4)
        self.K_color = mats[0, :3, :3].copy()
        self.extrinsic_color = mats[1].copy()
        self.K_depth = mats[2, :3, :3].copy()
        self.extrinsic_depth = mats[3].copy()
        ccomp, dcomp, cw, ch, dw, dh, shift, nframes = struct.unpack("<2i4IfQ", _read_exact(f, 36, p, "stream description"))
        if ccomp not in _COLOR_COMPRESSION or dcomp not in _DEPTH_COMPRESSION:
            raise SensFormatError(f"{p}: unknown compression codes (color {ccomp}, depth {dcomp})")
        self.color_compression = _COLOR_COMPRESSION[ccomp]
        self.depth_compression = _DEPTH_COMPRESSION[dcomp]
        if self.depth_compression not in ("raw_ushort", "zlib_ushort"):
            raise SensFormatError(f"{p}: depth compression {self.depth_compression!r} is not supported (raw_ushort, zlib_ushort are)")
        if self.color_compression == "unknown":
            raise SensFormatError(f"{p}: colour compression is 'unknown'; cannot decode frames")
        self.color_hw = (int(ch), int(cw))
        self.depth_hw = (int(dh), int(dw))
        self.depth_shift = float(shift)
        self._num_frames = int(nframes)

    def _index_frames(self, f: BinaryIO) -> list[int]:
        size = os.fstat(f.fileno()).st_size
        offsets = []
        for i in range(self._num_frames):
            start = f.tell()
            head = _read_exact(f, _FRAME_HEADER.size, self.path, f"frame {i} header")
            *_, csize, dsize = _FRAME_HEADER.unpack(head)
            end = start + _FRAME_HEADER.size + csize + dsize
            if end > size:
                raise SensFormatError(f"{self.path}: frame {i} claims {csize + dsize} payload bytes past the end of the file (truncated download?)")
            offsets.append(start)
            f.seek(end)
        return offsets

    def __len__(self) -> int:
        return len(self._offsets)

    def __repr__(self) -> str:
        return f"SensFile({str(self.path)!r}, frames={len(self)}, color={self.color_hw}, depth={self.depth_hw})"

    def read_frame(self, index: int) -> SensFrame:
        """The raw frame ``index`` (0-based, the number ScanNet's exporter uses in file names)."""
        if not 0 <= index < len(self._offsets):
            raise IndexError(f"{self.path}: frame {index} out of range (0..{len(self._offsets) - 1})")
        with open(self.path, "rb") as f:
            f.seek(self._offsets[index])
            vals = _FRAME_HEADER.unpack(_read_exact(f, _FRAME_HEADER.size, self.path, f"frame {index} header"))
            pose = np.asarray(vals[:16], dtype=np.float64).reshape(4, 4)
            ts_c, ts_d, csize, dsize = vals[16:]
            color = _read_exact(f, csize, self.path, f"frame {index} colour")
            depth = _read_exact(f, dsize, self.path, f"frame {index} depth")
        return SensFrame(index, pose, int(ts_c), int(ts_d), color, depth)

    def decode_color(self, frame: SensFrame) -> NDArray[np.uint8]:
        """Colour as an H×W×3 **BGR** uint8 image (OpenCV order, like ``cv2.imread``)."""
        fid = f"{frame.index:05d}"
        if self.color_compression == "raw":
            h, w = self.color_hw
            if len(frame.color_data) != h * w * 3:
                raise FrameLoadError(f"{self.path}: frame {frame.index}: raw colour has {len(frame.color_data)} bytes, expected {h * w * 3}",
                                     reason="unreadable_color", frame_id=fid)
            rgb = np.frombuffer(frame.color_data, dtype=np.uint8).reshape(h, w, 3)
            return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        bgr = cv2.imdecode(np.frombuffer(frame.color_data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FrameLoadError(f"{self.path}: frame {frame.index}: colour payload does not decode as {self.color_compression}",
                                 reason="unreadable_color", frame_id=fid)
        return bgr

    def decode_depth(self, frame: SensFrame) -> NDArray[np.uint16]:
        """Depth as H×W uint16 in ``depth_shift`` units per metre (millimetres for ScanNet)."""
        fid = f"{frame.index:05d}"
        data = frame.depth_data
        if self.depth_compression == "zlib_ushort":
            try:
                data = zlib.decompress(data)
            except zlib.error as exc:
                raise FrameLoadError(f"{self.path}: frame {frame.index}: depth payload is not valid zlib ({exc})",
                                     reason="unreadable_depth", frame_id=fid) from exc
        h, w = self.depth_hw
        if len(data) != h * w * 2:
            raise FrameLoadError(f"{self.path}: frame {frame.index}: depth has {len(data)} bytes, expected {h * w * 2} for {w}x{h}",
                                 reason="unreadable_depth", frame_id=fid)
        return np.frombuffer(data, dtype="<u2").reshape(h, w).astype(np.uint16)
