"""`ros3d-agent demo`: the README demo. The environment check, then a recorded robot's bag replayed
in real time into the live node, with grounded questions answered and scored against ground truth.

Thin layer over :mod:`ros3d_agent.replay.demo` (see there for the steps). Data is cached under
``.cache/demo/``, results go to ``outputs/demo/`` (both relative to the working directory, which
``scripts/demo.sh`` sets to the repository root).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=30, help="frames of the synthetic room (default 30)")
    parser.add_argument("--width", type=int, default=320, help="image width (default 320)")
    parser.add_argument("--height", type=int, default=240, help="image height (default 240)")
    parser.add_argument("--seed", type=int, default=7, help="which synthetic room (default 7)")
    parser.add_argument("--bag-rate", type=float, default=10.0, help="frame rate the bag is recorded at, Hz (default 10)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed (default 1.0: real time)")
    parser.add_argument("--cache", default=".cache/demo", help="where the scene, annotations and bag are cached (default .cache/demo)")
    parser.add_argument("--out", default="outputs/demo", help="where results, summary and the BEV picture go (default outputs/demo)")
    parser.add_argument("--checkpoint", default="models/demo_small",
                        help="checkpoint used when it exists (default models/demo_small; else the tiny preset, random weights)")
    parser.add_argument("--config", default="workstation", help="node params file (default workstation)")
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached data")
    parser.add_argument("--no-doctor", action="store_true", help="skip the environment check")


def main(args: argparse.Namespace) -> int:
    import logging

    from ros3d_agent.replay.demo import DemoConfig, run_demo

    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if args.frames < 2 or args.width < 16 or args.height < 16 or args.bag_rate <= 0 or not 0 < args.rate <= 100:
        print("ros3d-agent demo: error: need --frames >= 2, --width/--height >= 16, --bag-rate > 0 and --rate in (0, 100]", file=sys.stderr)
        return 2
    cfg = DemoConfig(seed=args.seed, frames=args.frames, width=args.width, height=args.height, bag_rate_hz=args.bag_rate, rate=args.rate,
                     cache=Path(args.cache), out=Path(args.out), checkpoint=Path(args.checkpoint), doctor=not args.no_doctor,
                     fresh=args.fresh, config=args.config)
    return run_demo(cfg, say=lambda s: print(s, flush=True))


if __name__ == "__main__":
    _p = argparse.ArgumentParser(prog="ros3d-agent demo")
    add_arguments(_p)
    sys.exit(main(_p.parse_args()))
