"""`ros3d-agent replay`: evaluate the node on a rosbag: offline (deterministic) or in real time.

    ros3d-agent replay --bag BAG --questions Q.jsonl --mode offline --out DIR --preset tiny --allow-random-weights
    ros3d-agent replay --bag BAG --questions Q.jsonl --mode realtime --out DIR --checkpoint CKPT --rate 0.5 \\
        --rgb-topic /head/rgb --depth-topic /head/depth --camera-info-topic /head/rgb_info --fixed-frame map
    ros3d-agent replay --scenario scenario.yaml [--mode realtime ...]     # options on the line win

Writes results.jsonl, predictions.jsonl, summary.json and bev_<scene>.png into --out and prints a
table. Exit codes: 0 done, 1 the run failed (node/player), 2 bad inputs, 3 truncated/corrupt bag
(the results so far are written). Thin layer over :func:`ros3d_agent.replay.scenario.run_scenario`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", metavar="FILE", help="YAML scenario bundling the options below (command-line options win)")
    parser.add_argument("--bag", metavar="BAG", help="rosbag2 directory (or .mcap file)")
    parser.add_argument("--questions", metavar="Q.jsonl", help="annotation JSONL with ground truth in the fixed frame (+ optional ask_at)")
    parser.add_argument("--mode", choices=("offline", "realtime"),
                        help="offline: deterministic, no DDS; realtime: player + node + action (default offline)")
    parser.add_argument("--out", metavar="DIR", help="output directory")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", metavar="CKPT", help="local checkpoint directory")
    model.add_argument("--preset", help="random-weight preset (tiny) for plumbing runs; needs --allow-random-weights")
    parser.add_argument("--allow-random-weights", action="store_true", default=None, help="allow --preset (answers are meaningless)")
    parser.add_argument("--device", help="torch device (default: the params file's; cpu when it asks for CUDA and there is none)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), help="model dtype (default: the params file's)")
    parser.add_argument("--rgb-topic", metavar="T", help="colour image topic in the bag (default /camera/color/image_raw)")
    parser.add_argument("--depth-topic", metavar="T", help="depth image topic in the bag (default /camera/aligned_depth_to_color/image_raw)")
    parser.add_argument("--camera-info-topic", metavar="T", help="colour CameraInfo topic in the bag (default /camera/color/camera_info)")
    parser.add_argument("--depth-info-topic", metavar="T", help="depth CameraInfo topic (only with -p input.use_depth_info:=true)")
    parser.add_argument("--tf-topic", metavar="T", help="TF topic in the bag (default /tf)")
    parser.add_argument("--tf-static-topic", metavar="T", help="static TF topic in the bag (default /tf_static)")
    parser.add_argument("--fixed-frame", metavar="F", help="frame of the ground-truth boxes and answers (default map)")
    parser.add_argument("--rate", type=float, help="realtime playback speed (default 1.0)")
    parser.add_argument("--config", help="node params file: a name in config/ or a path (default workstation)")
    parser.add_argument("--param", "-p", action="append", metavar="NAME:=VALUE", help="node parameter override, repeatable")
    parser.add_argument("--ask-at", type=float, metavar="S",
                        help="ask questions without ask_at this many seconds into the bag (default: after the last frame)")
    parser.add_argument("--repeat", type=int, help="run N times (run_1..run_N; offline runs are compared for identical results)")
    parser.add_argument("--threads", type=int, help="torch CPU threads for offline mode (default: torch's)")
    parser.add_argument("--node", metavar="NAME", help="realtime: use this running node (e.g. /ros3d_agent) instead of starting one")
    parser.add_argument("--settle-timeout", type=float,
                        help="realtime: wait at most this long after the bag for the node to admit queued keyframes (default 20)")
    parser.add_argument("--no-java", action="store_true", default=None, help="skip METEOR (needs Java)")


def _pick(cli: Any, file_value: Any, default: Any) -> Any:
    return cli if cli is not None else (file_value if file_value is not None else default)


def scenario_from_args(args: argparse.Namespace) -> Any:
    """Merge the command line over the scenario file over the defaults."""
    from ros3d_agent.replay.scenario import ModelChoice, ReplayError, Scenario, TopicMap, load_scenario_file, parse_param_overrides

    doc = load_scenario_file(args.scenario) if args.scenario else {}
    fm, ft = doc.get("model", {}), doc.get("topics", {})
    missing = [opt for opt, key in (("--bag", "bag"), ("--questions", "questions"), ("--out", "out"))
               if _pick(getattr(args, key), doc.get(key), None) is None]
    if missing:
        raise ReplayError(f"missing {', '.join(missing)} (give them on the command line or in --scenario)")
    if args.checkpoint or args.preset:  # the command line chooses the model as a whole
        fm = {k: v for k, v in fm.items() if k in ("device", "dtype")}
    model = ModelChoice(
        checkpoint=_pick(args.checkpoint, fm.get("checkpoint"), ""), preset=_pick(args.preset, fm.get("preset"), ""),
        allow_random_weights=bool(_pick(args.allow_random_weights, fm.get("allow_random_weights"), False)),
        device=_pick(args.device, fm.get("device"), ""), dtype=_pick(args.dtype, fm.get("dtype"), ""),
    )
    d = TopicMap()
    topics = TopicMap(
        color=_pick(args.rgb_topic, ft.get("color"), d.color), depth=_pick(args.depth_topic, ft.get("depth"), d.depth),
        color_info=_pick(args.camera_info_topic, ft.get("camera_info", ft.get("color_info")), d.color_info),
        depth_info=_pick(args.depth_info_topic, ft.get("depth_info"), d.depth_info),
        tf=_pick(args.tf_topic, ft.get("tf"), d.tf), tf_static=_pick(args.tf_static_topic, ft.get("tf_static"), d.tf_static),
    )
    params = parse_param_overrides(doc.get("params"))
    params.update(parse_param_overrides(args.param))
    return Scenario(
        bag=Path(_pick(args.bag, doc.get("bag"), "")), questions=Path(_pick(args.questions, doc.get("questions"), "")),
        out=Path(_pick(args.out, doc.get("out"), "")), mode=_pick(args.mode, doc.get("mode"), "offline"), model=model, topics=topics,
        fixed_frame=_pick(args.fixed_frame, doc.get("fixed_frame"), "map"), rate=float(_pick(args.rate, doc.get("rate"), 1.0)),
        config=_pick(args.config, doc.get("config"), "workstation"), params=params, repeat=int(_pick(args.repeat, doc.get("repeat"), 1)),
        default_ask_at=_pick(args.ask_at, doc.get("ask_at"), None), threads=int(_pick(args.threads, doc.get("threads"), 0)),
        java=not _pick(args.no_java, None if doc.get("java") is None else not doc["java"], False),
        settle_timeout_s=float(_pick(args.settle_timeout, doc.get("settle_timeout_s"), 20.0)),
        question_timeout_s=float(doc.get("question_timeout_s") or 120.0), node=_pick(args.node, doc.get("node"), ""),
    )


def main(args: argparse.Namespace) -> int:
    import logging

    from ros3d_agent.replay.scenario import EXIT_BAD_INPUT, ReplayError, run_scenario

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        sc = scenario_from_args(args)
    except ReplayError as exc:
        print(f"ros3d-agent replay: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if sc.model.random_weights:
        print("note: random weights (--preset): the answers are meaningless; the replay plumbing and metrics are real")
    code, _ = run_scenario(sc, say=lambda s: print(s, flush=True))
    return code


if __name__ == "__main__":
    _p = argparse.ArgumentParser(prog="ros3d-agent replay")
    add_arguments(_p)
    sys.exit(main(_p.parse_args()))
