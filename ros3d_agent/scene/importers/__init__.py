"""Importers for what users already have: ScanNet scans and the 3D-language benchmark files.

* :func:`import_scannet_scan` — a ScanNet scan folder (mesh, segmentation, aggregation, meta, and
  frames exported by SensReader, a ``posed_images`` folder, or the raw ``.sens``) → a scene directory
  in the benchmarks' axis-aligned frame, with ``objects.json`` and ``points.ply``.
* :func:`import_annotations` / :func:`convert_annotations` — ScanQA, SQA3D, ScanRefer, Multi3DRefer and
  Scan2Cap files → annotation JSONL (DESIGN.md "Annotations"), boxes filled from the scenes' objects.
* :class:`SensFile` — random access to a ScanNet ``.sens`` stream.

Nothing here imports rclpy.
"""

from .benchmarks import (
    BENCHMARKS,
    AnnotationFormatError,
    ImportSummary,
    SceneIndex,
    convert_annotations,
    import_annotations,
    write_jsonl,
)
from .scannet import (
    IMPORT_META_FILE,
    ScanNetFormatError,
    ScanNetImportConfig,
    ScanNetImportReport,
    build_objects,
    import_scannet_scan,
    locate_scan,
    read_aggregation,
    read_label_map,
    read_scannet_meta,
    read_segments,
)
from .scannet_sens import SensFile, SensFormatError
from .sqa3d import situation_pose

__all__ = [
    "BENCHMARKS",
    "IMPORT_META_FILE",
    "AnnotationFormatError",
    "ImportSummary",
    "SceneIndex",
    "ScanNetFormatError",
    "ScanNetImportConfig",
    "ScanNetImportReport",
    "SensFile",
    "SensFormatError",
    "build_objects",
    "convert_annotations",
    "import_annotations",
    "import_scannet_scan",
    "locate_scan",
    "read_aggregation",
    "read_label_map",
    "read_scannet_meta",
    "read_segments",
    "situation_pose",
    "write_jsonl",
]
