"""`ros3d-agent scenes bev SCENE --out bev.png`: a top-down picture of a scene, its hole mask and mapping.

Writes ``OUT`` (RGB, optionally with the ground-truth boxes of ``objects.json`` drawn on it),
``<OUT stem>_mask.png`` (white where no point fell: the pixels a BEV reconstruction loss must skip) and
``<OUT stem>_mapping.json`` (pixel ↔ world). Thin wrapper over :mod:`ros3d_agent.scene.bev`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _ceiling(text: str):
    import argparse

    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected 'auto', 'none' or a height in metres, got {text!r}") from exc


def add_arguments(parser) -> None:
    parser.add_argument("scene", metavar="SCENE", help="scene directory (posed_images layout)")
    parser.add_argument("--out", required=True, metavar="PNG", help="output picture (.png)")
    parser.add_argument("--size", type=int, default=432, help="image width and height in pixels (default 432, as Ross3D)")
    parser.add_argument("--source", choices=("auto", "points", "frames"), default="auto",
                        help="render the frames or points.ply (default auto: frames when present)")
    parser.add_argument("--stride", type=int, default=None,
                        help="pixel stride when rendering from frames (default: auto, ~6 M samples in all; 4 for 300 frames at 640x480)")
    parser.add_argument("--ceiling", type=_ceiling, default="auto", metavar="auto|none|Z",
                        help="drop points above a detected ceiling (auto), above height Z, or keep all (none)")
    parser.add_argument("--boxes", action="store_true", help="draw the GT boxes of objects.json with their labels")
    parser.add_argument("--scale", type=int, default=1, help="enlarge the picture by this factor before drawing boxes (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args) -> int:
    import cv2

    from ros3d_agent.scene import SceneDir, SceneError
    from ros3d_agent.scene.bev import GT_COLOR, BevConfig, draw_boxes, render_scene_bev

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        print(f"error: --out must end in .png (lossless, so the mask and colours survive), got {out}", file=sys.stderr)
        return 2
    if args.size < 8 or (args.stride is not None and args.stride < 1) or args.scale < 1:
        print("error: --size must be >= 8, --stride and --scale >= 1", file=sys.stderr)
        return 2
    try:
        scene = SceneDir(args.scene)
        bev = render_scene_bev(scene, BevConfig(width=args.size, height=args.size, ceiling=args.ceiling),
                               source=args.source, stride=args.stride, progress=not args.no_progress)
        objects = scene.load_objects() if args.boxes else []
    except (SceneError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    picture = bev.rgb
    if args.scale > 1:
        picture = picture.repeat(args.scale, axis=0).repeat(args.scale, axis=1)
    if objects:
        picture = draw_boxes(picture, bev.mapping, [o.box for o in objects], color=GT_COLOR,
                             labels=[o.label for o in objects], scale=args.scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    mask_path = out.with_name(out.stem + "_mask.png")
    mapping_path = out.with_name(out.stem + "_mapping.json")
    ok = cv2.imwrite(str(out), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    ok &= cv2.imwrite(str(mask_path), bev.holes.astype("uint8") * 255)
    if not ok:
        print(f"error: could not write {out} / {mask_path}", file=sys.stderr)
        return 1
    info = {**bev.mapping.to_dict(), "ceiling_cut": bev.ceiling_cut, "coverage": bev.coverage}
    mapping_path.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    cut = "none" if bev.ceiling_cut is None else f"z > {bev.ceiling_cut:.2f} m"
    print(f"wrote {out} ({bev.mapping.width}x{bev.mapping.height}, {bev.mapping.mpp * 100:.2f} cm/px, "
          f"{bev.coverage:.1%} covered, ceiling cut: {cut}{f', {len(objects)} boxes' if objects else ''}), {mask_path}, {mapping_path}")
    return 0
