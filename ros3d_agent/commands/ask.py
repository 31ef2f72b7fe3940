"""`ros3d-agent ask --scene DIR --question "..."`: one question about a scene directory, answered offline.

Loads ``--views`` frames sampled uniformly from the scene, encodes each once, builds grounding
proposals (``objects.json`` when the scene has one, else class-agnostic proposals from the scene's
point cloud), answers with the inference engine and prints the answer, the boxes and the timings
(or, with ``--json``, the Answer as JSON). A thin wrapper over :class:`ros3d_agent.inference.engine.SceneEngine`.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

_TASKS = ("qa", "situated_qa", "ground", "multi_ground", "caption")


def add_arguments(parser) -> None:
    parser.add_argument("--scene", required=True, metavar="SCENE_DIR", help="a scene directory (ScanNet posed_images layout)")
    parser.add_argument("--question", required=True, help="the question, referring expression or caption request")
    parser.add_argument("--task", choices=_TASKS, default="qa", help="what kind of answer (default: qa)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="DIR", help="checkpoint directory (ours, or a LLaVA-Video / Video-3D-LLM one)")
    src.add_argument("--preset", help="random-weight model preset (tiny, small): plumbing only, needs --allow-random-weights")
    parser.add_argument("--allow-random-weights", action="store_true", help="allow --preset (the answer is then meaningless)")
    parser.add_argument("--views", type=int, default=8, help="frames the model looks at, sampled uniformly (default 8)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--max-new-tokens", type=int, default=32, help="answer length limit (default 32)")
    parser.add_argument("--threshold", type=float, default=0.4, help="multi_ground cumulative-probability threshold (default 0.4)")
    parser.add_argument("--situation", help="situated_qa: where the agent stands and faces, in words")
    box = parser.add_mutually_exclusive_group()
    box.add_argument("--box", help="caption: the object's box 'cx,cy,cz,sx,sy,sz' (metres, scene frame)")
    box.add_argument("--object-id", type=int, help="caption: the id of an object in objects.json")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0: torch's default; 1 is often fastest for small models on a busy CPU)")
    parser.add_argument("--json", action="store_true", help="print the Answer as JSON")


def _load_frames(scene: Any, views: int) -> list[Any]:
    from ros3d_agent.scene import FrameLoadError, InvalidFrameError
    from ros3d_agent.scene.sampling import uniform_sample

    ids = scene.frame_ids()
    frames = []
    for i in uniform_sample(len(ids), views):
        try:
            frames.append(scene.load_frame(ids[i]))
        except (FrameLoadError, InvalidFrameError) as exc:
            print(f"warning: skipping frame {ids[i]}: {exc}", file=sys.stderr)
    return frames


def _proposals(scene: Any, frames: list[Any]) -> tuple[list[Any], list[str], list[int], str]:
    """Boxes, labels and ids to ground in: objects.json, else proposals from the scene's cloud."""
    objects = scene.load_objects()
    if objects:
        return [o.box for o in objects], [o.label for o in objects], [o.id for o in objects], "objects.json"
    try:
        from ros3d_agent.scene.fusion import fuse_frames
        from ros3d_agent.scene.proposals import propose_boxes
    except ImportError:
        return [], [], [], "none"
    if scene.points_path is not None:
        xyz, rgb = scene.load_points()
        source = "points.ply"
    else:  # the frames the model sees, fused: no extra reading
        cloud = fuse_frames(frames)
        xyz, rgb, source = cloud.xyz, cloud.rgb, "fused frames"
    result = propose_boxes(xyz, rgb=rgb)
    return list(result.boxes), ["" for _ in result.boxes], list(result.ids), f"proposals from {source}"


def _caption_box(args, scene: Any) -> Any:
    from ros3d_agent.scene.types import Box3D

    if args.box:
        return Box3D.from_list([float(v) for v in args.box.split(",")])
    if args.object_id is not None:
        for obj in scene.load_objects():
            if obj.id == args.object_id:
                return obj.box
        raise ValueError(f"--object-id {args.object_id}: no such object in {scene.path / 'objects.json'}")
    return None


def main(args) -> int:
    from ros3d_agent.scene import SceneDir, SceneError

    if args.views < 1 or args.threads < 0:
        print("error: --views must be >= 1 and --threads >= 0", file=sys.stderr)
        return 2
    if args.preset and not args.allow_random_weights:
        print(f"error: --preset {args.preset} has random weights (meaningless answers); add --allow-random-weights "
              "to run it anyway, or pass --checkpoint DIR", file=sys.stderr)
        return 2
    try:
        scene = SceneDir(args.scene)
        box = _caption_box(args, scene) if args.task == "caption" else None
        if args.task == "caption" and box is None:
            print("error: --task caption needs --box cx,cy,cz,sx,sy,sz or --object-id ID", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        frames = _load_frames(scene, args.views)
        load_s = time.perf_counter() - t0
    except (SceneError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not frames:
        print(f"error: {scene.path} has no loadable frames", file=sys.stderr)
        return 1

    import torch

    from ros3d_agent.inference.answer import GroundedBox
    from ros3d_agent.inference.engine import EngineConfig, EngineError, SceneEngine

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        engine = SceneEngine(EngineConfig(checkpoint=args.checkpoint, preset=args.preset, allow_random_weights=args.allow_random_weights,
                                          device=args.device, dtype=args.dtype, max_views=args.views,
                                          max_new_tokens=args.max_new_tokens, multi_threshold=args.threshold))
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    t0 = time.perf_counter()
    keyframes = [engine.encode_keyframe(f) for f in frames]
    encode_s = time.perf_counter() - t0
    boxes, labels, ids, source = [], [], [], "not needed"
    t0 = time.perf_counter()
    if args.task in ("ground", "multi_ground"):
        boxes, labels, ids, source = _proposals(scene, frames)
    proposal_s = time.perf_counter() - t0
    answer = engine.answer(args.question, args.task, keyframes, boxes, situation=args.situation, box=box)
    # proposal_id becomes the objects.json id (or the proposal's stable id), and the label is filled in
    answer.objects = [GroundedBox(o.box, o.score, ids[o.proposal_id], labels[o.proposal_id]) for o in answer.objects]
    answer.timings = {"load_frames": load_s, "encode_keyframes": encode_s, "proposals": proposal_s, **answer.timings}
    engine.release()

    if args.json:
        print(json.dumps(answer.to_dict(), indent=2))
    else:
        print(f"question: {answer.question}")
        if not answer.success:
            print(f"failed:   {answer.error}")
        elif args.task in ("ground", "multi_ground"):
            print(f"answer:   {len(answer.objects)} object(s) among {len(boxes)} candidates ({source})")
        else:
            print(f"answer:   {answer.text}")
        for o in answer.objects:
            label = f" {o.label}" if o.label else ""
            print(f"  [{o.proposal_id}]{label} score {o.score:.3f} box {[round(v, 3) for v in o.box.to_list()]}")
        per_kf = encode_s / len(keyframes)
        print(f"views:    {len(answer.keyframe_stamps)} of {len(frames)} loaded; encode {per_kf * 1000:.1f} ms/keyframe")
        print("timings:  " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in answer.timings.items()))
        if engine.info.get("random_weights"):
            print("note:     random weights (--preset): the answer is meaningless", file=sys.stderr)
    return 0 if answer.success else 1
