"""ScanNet and benchmark importers on fabricated fixtures in the exact upstream formats.

The fixtures (test/fixtures/scannet, test/fixtures/benchmarks; rebuilt by
test/fixtures/scannet/build_fixtures.py) are small enough that every expected number below is worked
out by hand in that script's docstring: axisAlignment maps raw (x, y, z) to (1 - y, x + 2, z).
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from ros3d_agent.cli import main as cli_main
from ros3d_agent.scene import SceneDir, SceneDirError
from ros3d_agent.scene.annotations.records import read_annotations
from ros3d_agent.scene.importers import (
    BENCHMARKS,
    IMPORT_META_FILE,
    AnnotationFormatError,
    ScanNetFormatError,
    ScanNetImportConfig,
    SensFile,
    SensFormatError,
    convert_annotations,
    import_annotations,
    import_scannet_scan,
    read_label_map,
    situation_pose,
)
from ros3d_agent.scene.importers.scannet import MIN_BOX_EXTENT

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SCAN = FIX / "scannet" / "scene0000_00"
TSV = FIX / "scannet" / "scannetv2-labels.combined.tsv"
BENCH = FIX / "benchmarks"
SCENE = "scene0000_00"
A = np.array([[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
K_COLOR = np.array([[146.25, 0, 80.7], [0, 146.25, 60.4], [0, 0, 1]])
K_DEPTH = np.array([[72.2, 0, 39.9], [0, 72.2, 29.9], [0, 0, 1]])
SMALL = ScanNetImportConfig(image_size=(60, 80), progress=False)
TABLE_BOX = [-0.5, 5.0, 0.25, 1.0, 2.0, 0.5]
CHAIR_BOX = [0.0, 2.5, 0.5, 2.0, 1.0, 1.0]


def cfg(**kw) -> ScanNetImportConfig:
    base = dict(image_size=(60, 80), progress=False)
    base.update(kw)
    return ScanNetImportConfig(**base)


def copy_scan(tmp_path: Path) -> Path:
    dst = tmp_path / "scans" / SCENE
    shutil.copytree(SCAN, dst)
    return dst


@pytest.fixture(scope="module")
def scenes_root(tmp_path_factory) -> Path:
    """The fixture scan imported once (labels mapped), shared by the benchmark tests."""
    root = tmp_path_factory.mktemp("scenes")
    import_scannet_scan(SCAN, root, cfg(labels_tsv=TSV))
    return root


# ===================================================================================================
# ScanNet scan → scene directory
# ===================================================================================================
def test_import_exported_scan_counts_boxes_and_labels(tmp_path):
    report = import_scannet_scan(SCAN, tmp_path, cfg(labels_tsv=TSV))
    assert report.scene_id == SCENE and report.image_source == "exported"
    assert report.frames_considered == 4 and report.frames_written == 2
    assert dict(report.frames_skipped) == {"nonfinite_pose": 1, "missing_depth": 1}
    assert report.objects.written == 2
    assert dict(report.objects.excluded) == {"wall": 1}
    assert report.objects.empty_ids == [3]
    assert dict(report.objects.unmapped_labels) == {"lamp": 1}
    assert report.alignment_found
    assert "nonfinite_pose 1" in report.summary()

    sd = SceneDir(tmp_path / SCENE)
    objs = {o.id: o for o in sd.load_objects()}
    assert sorted(objs) == [0, 1]  # ids are ScanNet objectIds
    assert objs[0].label == "table" and objs[1].label == "chair"  # "office chair" -> nyu40class
    np.testing.assert_allclose(objs[0].box.to_list(), TABLE_BOX, atol=1e-6)
    np.testing.assert_allclose(objs[1].box.to_list(), CHAIR_BOX, atol=1e-6)


def test_poses_are_axis_aligned_and_sceneDir_reads_back(tmp_path):
    import_scannet_scan(SCAN, tmp_path, SMALL)
    sd = SceneDir(tmp_path / SCENE)
    assert sd.frame_ids() == ["00000", "00001"]
    for i in (0, 1):
        raw = np.loadtxt(SCAN / "pose" / f"{i}.txt")
        np.testing.assert_allclose(sd.load_pose(i), A @ raw, atol=1e-12)
    frames = list(sd.iter_frames())
    assert len(frames) == 2 and not sd.skipped
    f = frames[0]
    assert f.rgb.shape == (60, 80, 3) and f.depth.shape == (60, 80)
    assert f.depth.dtype == np.float32 and (f.depth > 0).mean() > 0.8
    # camera 0 sits at raw (1, 1, 1.5) -> aligned (0, 3, 1.5)
    np.testing.assert_allclose(f.T_world_cam[:3, 3], [0.0, 3.0, 1.5], atol=1e-12)


def test_depth_resolution_differs_depth_intrinsic_written(tmp_path):
    report = import_scannet_scan(SCAN, tmp_path, cfg(image_size=None))  # keep 162x121 colour
    out = tmp_path / SCENE
    assert report.depth_intrinsic_written
    sd = SceneDir(out)
    np.testing.assert_allclose(sd.K_color, K_COLOR, atol=1e-9)
    np.testing.assert_allclose(sd.K_depth, K_DEPTH, atol=1e-9)
    assert cv2.imread(str(out / "00000.jpg")).shape == (121, 162, 3)
    # depth is written untouched, at its own resolution
    assert (out / "00000.png").read_bytes() == (SCAN / "depth" / "0.png").read_bytes()
    frame = sd.load_frame(0)
    assert frame.depth.shape == (121, 162)
    # the colour pixel through the principal point sees depth pixel (39.9, 29.9) -> rounded (40, 30)
    src = cv2.imread(str(SCAN / "depth" / "0.png"), cv2.IMREAD_UNCHANGED)
    v, u = round(K_COLOR[1, 2]), round(K_COLOR[0, 2])
    assert frame.depth[v, u] == pytest.approx(src[30, 40] / 1000.0)


def test_colour_resized_and_intrinsics_scaled(tmp_path):
    import_scannet_scan(SCAN, tmp_path, SMALL)
    sd = SceneDir(tmp_path / SCENE)
    sx, sy = 80 / 162, 60 / 121
    expected = np.array([[146.25 * sx, 0, sx * (80.7 + 0.5) - 0.5], [0, 146.25 * sy, sy * (60.4 + 0.5) - 0.5], [0, 0, 1]])
    np.testing.assert_allclose(sd.K_color, expected, atol=1e-12)
    assert (tmp_path / SCENE / "depth_intrinsic.txt").is_file()  # same 80x60 size, different intrinsics


def test_points_are_the_aligned_mesh(tmp_path):
    import_scannet_scan(SCAN, tmp_path, SMALL)
    xyz, rgb = SceneDir(tmp_path / SCENE).load_points()
    assert xyz.shape == (22, 3) and rgb is not None
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    # raw bbox [-1,6]x[-1,4]x[0,2.6] -> aligned x in [1-4, 1+1], y in [-1+2, 6+2]
    np.testing.assert_allclose(lo, [-3.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(hi, [2.0, 8.0, 2.6], atol=1e-6)
    assert tuple(rgb[0]) == (200, 30, 30)  # first vertex: the red chair
    meta = json.loads((tmp_path / SCENE / IMPORT_META_FILE).read_text())
    np.testing.assert_allclose(np.reshape(meta["world_from_scannet"], (4, 4)), A)
    np.testing.assert_allclose(meta["raw_bbox_center"], [2.5, 1.5, 1.3], atol=1e-6)


def test_raw_labels_keep_structure_and_no_alignment(tmp_path):
    report = import_scannet_scan(SCAN, tmp_path, cfg(exclude_labels=(), axis_align=False))
    assert not report.alignment_found and "raw frame" in report.summary()
    objs = {o.id: o for o in SceneDir(tmp_path / SCENE).load_objects()}
    assert objs[1].label == "office chair"  # no TSV: raw category
    np.testing.assert_allclose(objs[1].box.to_list(), [0.5, 1.0, 0.5, 1.0, 2.0, 1.0], atol=1e-6)
    # the wall is a plane x = 5: its x extent is clamped to the minimum
    np.testing.assert_allclose(objs[2].box.to_list(), [5.0, 1.5, 1.25, MIN_BOX_EXTENT, 3.0, 2.5], atol=1e-6)
    np.testing.assert_allclose(SceneDir(tmp_path / SCENE).load_pose(0), np.loadtxt(SCAN / "pose" / "0.txt"))


def test_frame_skip_keeps_every_kth_available_frame(tmp_path):
    report = import_scannet_scan(SCAN, tmp_path, cfg(frame_skip=2))
    assert report.frames_considered == 2  # frames 0 and 2
    assert report.frames_written == 1 and dict(report.frames_skipped) == {"nonfinite_pose": 1}


def test_sens_stream_matches_the_exported_frames(tmp_path):
    a = import_scannet_scan(SCAN, tmp_path / "exp", SMALL)
    b = import_scannet_scan(SCAN, tmp_path / "sens", SMALL, images=SCAN / f"{SCENE}.sens")
    assert b.image_source == "sens" and a.image_source == "exported"
    assert b.frames_written == 3 and dict(b.frames_skipped) == {"nonfinite_pose": 1}  # the .sens has frame 3's depth
    sa, sb = SceneDir(tmp_path / "exp" / SCENE), SceneDir(tmp_path / "sens" / SCENE)
    assert sb.frame_ids() == ["00000", "00001", "00003"]
    np.testing.assert_allclose(sb.K_depth, sa.K_depth, atol=1e-5)  # float32 in the stream
    for fid in ("00000", "00001"):
        np.testing.assert_allclose(sb.load_pose(fid), sa.load_pose(fid), atol=1e-6)
        da = cv2.imread(str(sa.path / f"{fid}.png"), cv2.IMREAD_UNCHANGED)
        db = cv2.imread(str(sb.path / f"{fid}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(da, db)


def test_posed_images_input_without_depth_intrinsics(tmp_path):
    """A posed_images folder whose depth matches colour: no depth_intrinsic.txt is written."""
    scan = copy_scan(tmp_path)
    for sub in ("color", "depth", "pose", "intrinsic"):
        shutil.rmtree(scan / sub)
    (scan / f"{SCENE}.sens").unlink()
    posed = scan / "posed_images" / SCENE
    posed.mkdir(parents=True)
    K = np.array([[73.0, 0, 39.5], [0, 73.0, 29.5], [0, 0, 1]])
    np.savetxt(posed / "intrinsic.txt", np.block([[K, np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]]))
    for i in (0, 10):
        cv2.imwrite(str(posed / f"{i:05d}.jpg"), np.full((60, 80, 3), 100, np.uint8))
        cv2.imwrite(str(posed / f"{i:05d}.png"), np.full((60, 80), 1500, np.uint16))
        np.savetxt(posed / f"{i:05d}.txt", np.eye(4))
    report = import_scannet_scan(scan, tmp_path / "out", SMALL)
    assert report.image_source == "posed_images" and report.frames_written == 2
    assert not report.depth_intrinsic_written
    sd = SceneDir(tmp_path / "out" / SCENE)
    assert sd.K_depth is None and sd.frame_ids() == ["00000", "00010"]
    np.testing.assert_allclose(sd.K_color, K)
    np.testing.assert_allclose(sd.load_pose(10), A)


# ----------------------------------------------------------------------------------------------- errors
def test_corrupt_aggregation_names_the_file(tmp_path):
    scan = copy_scan(tmp_path)
    (scan / f"{SCENE}.aggregation.json").write_text('{"segGroups": [')
    with pytest.raises(ScanNetFormatError, match=rf"{SCENE}\.aggregation\.json.*corrupt JSON"):
        import_scannet_scan(scan, tmp_path / "out", SMALL)
    assert not (tmp_path / "out" / SCENE).exists()  # nothing half-written


def test_missing_segs_file_is_a_clear_error(tmp_path):
    scan = copy_scan(tmp_path)
    (scan / f"{SCENE}_vh_clean_2.0.010000.segs.json").unlink()
    with pytest.raises(ScanNetFormatError, match=r"_vh_clean_2\.0\.010000\.segs\.json: missing over-segmentation"):
        import_scannet_scan(scan, tmp_path / "out", SMALL)


def test_malformed_seg_group_and_vertex_count_mismatch(tmp_path):
    scan = copy_scan(tmp_path)
    agg = json.loads((scan / f"{SCENE}.aggregation.json").read_text())
    agg["segGroups"][1].pop("segments")
    (scan / f"{SCENE}.aggregation.json").write_text(json.dumps(agg))
    with pytest.raises(ScanNetFormatError, match=r"segGroups\[1\] is malformed"):
        import_scannet_scan(scan, tmp_path / "out", SMALL)
    segs = json.loads((scan / f"{SCENE}_vh_clean_2.0.010000.segs.json").read_text())
    segs["segIndices"] = segs["segIndices"][:-1]
    (scan / f"{SCENE}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(segs))
    with pytest.raises(ScanNetFormatError, match="21 segment ids but .* 22 vertices"):
        import_scannet_scan(scan, tmp_path / "out", SMALL)


def test_missing_meta_needs_no_axis_align_and_absent_alignment_is_reported(tmp_path):
    scan = copy_scan(tmp_path)
    meta = scan / f"{SCENE}.txt"
    text = meta.read_text()
    meta.unlink()
    with pytest.raises(ScanNetFormatError, match=r"scene0000_00\.txt: missing scan meta file"):
        import_scannet_scan(scan, tmp_path / "out", SMALL)
    meta.write_text("\n".join(line for line in text.splitlines() if not line.startswith("axisAlignment")))
    report = import_scannet_scan(scan, tmp_path / "out", SMALL)  # a test scan: no alignment
    assert not report.alignment_found
    meta.write_text("axisAlignment = 2 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1\n")
    with pytest.raises(ScanNetFormatError, match="not a rigid transform"):
        import_scannet_scan(scan, tmp_path / "out2", SMALL)


def test_hi_res_aggregation_name_is_accepted(tmp_path):
    scan = copy_scan(tmp_path)
    (scan / f"{SCENE}.aggregation.json").rename(scan / f"{SCENE}_vh_clean.aggregation.json")
    report = import_scannet_scan(scan, tmp_path / "out", SMALL)
    assert report.objects.written == 2


def test_existing_output_needs_overwrite_and_stale_frames_go(tmp_path):
    import_scannet_scan(SCAN, tmp_path, SMALL)
    with pytest.raises(SceneDirError, match="already holds a scene"):
        import_scannet_scan(SCAN, tmp_path, SMALL)
    (tmp_path / SCENE / "notes.md").write_text("mine")
    import_scannet_scan(SCAN, tmp_path, cfg(frame_skip=2, overwrite=True))
    assert SceneDir(tmp_path / SCENE).frame_ids() == ["00000"]
    assert (tmp_path / SCENE / "notes.md").read_text() == "mine"  # only layout files are removed


def test_no_frames_and_bad_config(tmp_path):
    scan = copy_scan(tmp_path)
    for sub in ("color", "depth", "pose", "intrinsic"):
        shutil.rmtree(scan / sub)
    (scan / f"{SCENE}.sens").unlink()
    with pytest.raises(ScanNetFormatError, match="no frames found"):
        import_scannet_scan(scan, tmp_path / "out", SMALL)
    with pytest.raises(ValueError, match="frame_skip"):
        ScanNetImportConfig(frame_skip=0)


def test_label_map_reads_columns_by_name(tmp_path):
    assert read_label_map(TSV, "nyu40class")["office chair"] == "chair"
    assert read_label_map(TSV, "category")["office chair"] == "office chair"
    with pytest.raises(ScanNetFormatError, match="no_such_column"):
        read_label_map(TSV, "no_such_column")


# ----------------------------------------------------------------------------------------------- .sens
def test_sens_reader_header_and_frames():
    sens = SensFile(SCAN / f"{SCENE}.sens")
    assert len(sens) == 4 and sens.color_hw == (121, 162) and sens.depth_hw == (60, 80)
    assert sens.color_compression == "jpeg" and sens.depth_compression == "zlib_ushort" and sens.depth_shift == 1000.0
    np.testing.assert_allclose(sens.K_color, K_COLOR, atol=1e-4)
    f3 = sens.read_frame(3)
    assert f3.timestamp_color_us == 3000 and f3.timestamp_depth_us == 3005
    depth = sens.decode_depth(sens.read_frame(0))
    np.testing.assert_array_equal(depth, cv2.imread(str(SCAN / "depth" / "0.png"), cv2.IMREAD_UNCHANGED))
    assert sens.decode_color(f3).shape == (121, 162, 3)
    assert np.isneginf(sens.read_frame(2).camera_to_world).all()
    with pytest.raises(IndexError):
        sens.read_frame(4)


def test_sens_reader_rejects_truncated_and_foreign_files(tmp_path):
    data = (SCAN / f"{SCENE}.sens").read_bytes()
    (tmp_path / "cut.sens").write_bytes(data[: len(data) - 3000])
    with pytest.raises(SensFormatError, match="past the end of the file"):
        SensFile(tmp_path / "cut.sens")
    (tmp_path / "v3.sens").write_bytes(struct.pack("<I", 3) + data[4:])
    with pytest.raises(SensFormatError, match="version 3"):
        SensFile(tmp_path / "v3.sens")
    (tmp_path / "tiny.sens").write_bytes(data[:100])
    with pytest.raises(SensFormatError, match="truncated"):
        SensFile(tmp_path / "tiny.sens")


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_import_scannet(tmp_path, capsys):
    rc = cli_main(["scenes", "import-scannet", str(SCAN), "--out", str(tmp_path), "--image-size", "80x60",
                   "--labels", str(TSV), "--frame-skip", "1", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "2 written of 4 considered" in out and "nonfinite_pose 1" in out
    assert cv2.imread(str(tmp_path / SCENE / "00001.jpg")).shape == (60, 80, 3)
    rc = cli_main(["scenes", "import-scannet", str(tmp_path / "nope"), "--out", str(tmp_path), "--quiet"])
    assert rc == 1 and "scan directory does not exist" in capsys.readouterr().err


# ===================================================================================================
# Benchmark files → annotation JSONL
# ===================================================================================================
def by_id(records):
    return {r.id: r for r in records}


def test_scanqa_fields(scenes_root):
    recs, summary = convert_annotations("scanqa", [BENCH / "scanqa" / "ScanQA_v1.0_train.json"], scenes_root)
    r = by_id(recs)
    assert list(r) == ["train-scene0000-0", "train-scene0000-1", "train-scene9999-0"]
    a = r["train-scene0000-0"]
    assert (a.scene_id, a.task, a.question) == (SCENE, "qa", "What is on the left side of the table?")
    assert a.answers == ("brown office chair", "office chair") and a.object_ids == (1,)
    np.testing.assert_allclose(a.boxes, [CHAIR_BOX], atol=1e-6)
    np.testing.assert_allclose(r["train-scene0000-1"].boxes, [TABLE_BOX, CHAIR_BOX], atol=1e-6)
    missing = r["train-scene9999-0"]
    assert missing.object_ids == (4,) and missing.boxes == () and missing.meta["boxes_missing"] is True
    assert dict(summary.missing_scenes) == {"scene9999_00": 1}
    assert any("scene9999_00" in w for w in summary.warnings())


def test_scanqa_test_split_and_no_scenes(tmp_path):
    recs, summary = convert_annotations("scanqa", [BENCH / "scanqa" / "ScanQA_v1.0_test_w_obj.json",
                                                   BENCH / "scanqa" / "ScanQA_v1.0_train.json"])
    assert len(recs) == 3 and all(r.boxes == () for r in recs)
    assert sum(summary.skipped.values()) == 1
    assert any("without answers" in w and "test-scene0000-0" in w for w in summary.warnings())
    assert any("no scenes directory" in w for w in summary.warnings())


def test_sqa3d_join_answers_and_situation(scenes_root):
    files = [BENCH / "sqa3d" / "v1_balanced_sqa_annotations_train_scannetv2.json",
             BENCH / "sqa3d" / "v1_balanced_questions_train_scannetv2.json"]  # order does not matter
    recs, summary = convert_annotations("sqa3d", files, scenes_root)
    r = by_id(recs)
    assert list(r) == ["220602000001", "220602000002"]  # ids are strings
    a = r["220602000001"]
    assert a.task == "situated_qa" and a.question == "What is in front of me?" and a.answers == ("table",)
    assert a.situation.text == "I am sitting on the office chair with the table in front of me."
    # raw (0.5, -0.5, 0) + centre (2.5, 1.5, 1.3) = (3, 1, 1.3) -> aligned (1 - 1, 3 + 2, 1.3)
    np.testing.assert_allclose(a.situation.position, [0.0, 5.0, 1.3], atol=1e-6)
    assert a.situation.yaw == pytest.approx(math.pi / 4)  # -45 deg about z, then +90 deg alignment
    assert a.meta == {"qtype": "what", "situation_frame": "scene"}
    b = r["220602000002"]  # scene not imported: kept in SQA3D's frame
    assert b.situation.position == (-1.25, 0.75, 0.0) and b.situation.yaw == pytest.approx(math.pi / 3)
    assert b.meta["situation_frame"] == "sqa3d" and b.meta["qtype"] == "can"
    assert summary.situations_in_source_frame == 1
    assert sum(summary.skipped.values()) == 1  # question 220602000003 has no annotation


def test_sqa3d_needs_both_files():
    with pytest.raises(AnnotationFormatError, match="only questions given"):
        convert_annotations("sqa3d", [BENCH / "sqa3d" / "v1_balanced_questions_train_scannetv2.json"])
    with pytest.raises(AnnotationFormatError, match="not an SQA3D file"):
        convert_annotations("sqa3d", [BENCH / "scanqa" / "ScanQA_v1.0_train.json"])


def test_situation_pose_yaw_from_known_quaternion():
    half = math.radians(120) / 2
    pos, yaw = situation_pose([1, 2, 0], [0, 0, math.sin(half), math.cos(half)])
    assert pos == [1.0, 2.0, 0.0] and yaw == pytest.approx(math.radians(120))
    pos, yaw = situation_pose([1, 2, 0], [0, 0, math.sin(half), math.cos(half)], A, [0, 0, 0])
    assert pos == pytest.approx([-1.0, 3.0, 0.0]) and yaw == pytest.approx(math.radians(-150))


def test_scanrefer_fields_and_excluded_object(scenes_root):
    recs, summary = convert_annotations("scanrefer", [BENCH / "scanrefer" / "ScanRefer_filtered_val.json"], scenes_root)
    r = by_id(recs)
    assert list(r) == [f"{SCENE}|1|0", f"{SCENE}|0|0", f"{SCENE}|1|1"]
    a = r[f"{SCENE}|0|0"]
    assert a.task == "ground" and a.object_ids == (0,) and a.answers == ()
    assert a.question == "a wooden table in the middle of the room."  # trailing space stripped
    np.testing.assert_allclose(a.boxes, [TABLE_BOX], atol=1e-6)
    assert a.meta == {"object_name": "table", "ann_id": "0"}
    # the wall was excluded at import: the record cannot carry its box, so it is skipped and counted
    assert dict(summary.missing_objects) == {(SCENE, 2): 1}
    assert any(f"{SCENE}|2|0" in w for w in summary.warnings())
    with pytest.raises(ValueError, match="scenes directory is required"):
        convert_annotations("scanrefer", [BENCH / "scanrefer" / "ScanRefer_filtered_val.json"])


def test_multi3drefer_zero_single_multi_target(scenes_root):
    recs, summary = convert_annotations("multi3drefer", [BENCH / "multi3drefer" / "multi3drefer_val.json"], scenes_root)
    r = by_id(recs)
    zero, single, multi, missing = r[f"{SCENE}|0"], r[f"{SCENE}|1"], r[f"{SCENE}|2"], r["scene9999_00|0"]
    assert zero.task == "multi_ground" and zero.object_ids == () and zero.boxes == ()
    assert zero.meta["eval_type"] == "zt_w_d" and "boxes_missing" not in zero.meta
    assert single.object_ids == (1,) and single.meta["eval_type"] == "st_wo_d"
    np.testing.assert_allclose(multi.boxes, [TABLE_BOX, CHAIR_BOX], atol=1e-6)
    assert multi.object_ids == (0, 1) and multi.meta["eval_type"] == "mt"
    assert missing.boxes == () and missing.meta["boxes_missing"] is True  # never read as zero-target
    assert dict(summary.missing_scenes) == {"scene9999_00": 1}


def test_scan2cap_groups_descriptions_per_object(scenes_root):
    recs, summary = convert_annotations("scan2cap", [BENCH / "scanrefer" / "ScanRefer_filtered_val.json"], scenes_root)
    r = by_id(recs)
    assert list(r) == [f"{SCENE}|1|office_chair", f"{SCENE}|0|table"]
    chair = r[f"{SCENE}|1|office_chair"]
    assert chair.task == "caption" and chair.object_ids == (1,)
    assert chair.answers == ("this is a brown office chair. it is to the left of the table.",
                             "the chair with wheels next to the wooden table.")
    np.testing.assert_allclose(chair.box, CHAIR_BOX, atol=1e-6)
    np.testing.assert_allclose(chair.boxes, [CHAIR_BOX], atol=1e-6)
    assert sum(summary.skipped.values()) == 1  # the wall


def test_bad_benchmark_files_name_the_file(tmp_path, scenes_root):
    bad = tmp_path / "ScanRefer_filtered_val.json"
    bad.write_text('[{"scene_id": "scene0000_00", ')
    with pytest.raises(AnnotationFormatError, match=r"ScanRefer_filtered_val\.json: corrupt JSON"):
        convert_annotations("scanrefer", [bad], scenes_root)
    bad.write_text(json.dumps([{"scene_id": SCENE, "object_id": "1", "description": "x"}]))
    with pytest.raises(AnnotationFormatError, match=r"ScanRefer_filtered_val\.json: item 0 lacks \['ann_id'\]"):
        convert_annotations("scanrefer", [bad], scenes_root)
    bad.write_text(json.dumps([{"scene_id": SCENE, "object_id": "chair", "ann_id": "0", "description": "x"}]))
    with pytest.raises(AnnotationFormatError, match="object id 'chair' is not an integer"):
        convert_annotations("scanrefer", [bad], scenes_root)
    with pytest.raises(AnnotationFormatError, match="expected a JSON list"):
        convert_annotations("scanqa", [BENCH / "sqa3d" / "v1_balanced_questions_train_scannetv2.json"])
    with pytest.raises(AnnotationFormatError, match="input file not found"):
        convert_annotations("scanqa", [tmp_path / "nope.json"])
    with pytest.raises(ValueError, match="unknown benchmark"):
        convert_annotations("nr3d", [bad])


def test_duplicate_ids_keep_the_first(tmp_path):
    items = json.loads((BENCH / "scanqa" / "ScanQA_v1.0_train.json").read_text())
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps(items + [dict(items[0], question="changed?")]))
    recs, summary = convert_annotations("scanqa", [dup])
    assert len(recs) == 3 and by_id(recs)["train-scene0000-0"].question == "What is on the left side of the table?"
    assert dict(summary.duplicate_ids) == {"train-scene0000-0": 1}


def test_import_writes_jsonl_that_reads_back(tmp_path, scenes_root):
    out = tmp_path / "ann" / "m3d.jsonl"
    summary = import_annotations("multi3drefer", [BENCH / "multi3drefer" / "multi3drefer_val.json"], out, scenes_root, progress=False)
    back = read_annotations(out)
    assert summary.records == len(back) == 4
    line = json.loads(out.read_text().splitlines()[2])
    assert list(line)[:7] == ["id", "scene_id", "task", "question", "answers", "object_ids", "boxes"]


def test_cli_import_annotations(tmp_path, scenes_root, capsys):
    out = tmp_path / "sqa.jsonl"
    rc = cli_main(["scenes", "import-annotations", "--benchmark", "sqa3d", "--quiet", "--out", str(out), "--scenes", str(scenes_root),
                   "--input", str(BENCH / "sqa3d" / "v1_balanced_questions_train_scannetv2.json"),
                   str(BENCH / "sqa3d" / "v1_balanced_sqa_annotations_train_scannetv2.json")])
    assert rc == 0 and len(read_annotations(out)) == 2
    cap = capsys.readouterr()
    assert "2 records" in cap.out and "warning:" in cap.err
    rc = cli_main(["scenes", "import-annotations", "--benchmark", "scan2cap", "--quiet", "--out", str(out),
                   "--input", str(BENCH / "scanrefer" / "ScanRefer_filtered_val.json")])
    assert rc == 1 and "--scenes" in capsys.readouterr().err


def test_cli_benchmark_choices_match_the_registry():
    from ros3d_agent.commands.scenes_import_annotations import _BENCHMARKS

    assert sorted(_BENCHMARKS) == sorted(BENCHMARKS)


def test_output_may_not_be_the_image_source(tmp_path):
    import_scannet_scan(SCAN, tmp_path / "a", SMALL)
    scan = copy_scan(tmp_path)
    for sub in ("color", "depth", "pose", "intrinsic"):
        shutil.rmtree(scan / sub)
    posed = tmp_path / "a" / SCENE
    with pytest.raises(SceneDirError, match="is the image source"):
        import_scannet_scan(scan, tmp_path / "a", cfg(overwrite=True), images=posed)
    assert SceneDir(posed).frame_ids() == ["00000", "00001"]  # untouched


def test_frame_with_pose_but_no_colour_is_counted(tmp_path):
    scan = copy_scan(tmp_path)
    (scan / "color" / "1.jpg").unlink()
    report = import_scannet_scan(scan, tmp_path / "out", SMALL)
    assert report.frames_considered == 4 and report.frames_skipped["missing_color"] == 1


def test_scene_lookup_yawed_boxes_and_unsafe_ids(tmp_path):
    root = tmp_path / "scenes"
    (root / "synth_0").mkdir(parents=True)
    (root / "synth_0" / "objects.json").write_text(json.dumps([{"id": 7, "label": "box", "box": [0, 0, 0.5, 2, 1, 1, math.pi / 2]}]))
    (tmp_path / "objects.json").write_text(json.dumps([{"id": 7, "label": "x", "box": [9, 9, 9, 1, 1, 1]}]))
    items = [{"answers": ["a"], "object_ids": [7], "question": "q?", "question_id": qid, "scene_id": sid}
             for qid, sid in (("q0", "synth_0"), ("q1", ".."), ("q2", "synth_0/.."))]
    f = tmp_path / "qa.json"
    f.write_text(json.dumps(items))
    recs, summary = convert_annotations("scanqa", [f], root)
    r = by_id(recs)
    np.testing.assert_allclose(r["q0"].boxes, [[0, 0, 0.5, 1, 2, 1]], atol=1e-9)  # enclosing AABB of the rotated box
    assert r["q1"].boxes == () and r["q2"].boxes == ()  # never read outside the scenes root
    assert dict(summary.missing_scenes) == {"..": 1, "synth_0/..": 1}
