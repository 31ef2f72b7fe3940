"""Real-time bag player (a process): the bag's raw CDR on live topics, paced by its log times, with /clock.

    python -m ros3d_agent.replay.player --bag BAG --topic /camera/color/image_raw --topic /tf ... \\
        --latched /tf_static --rate 1.0 --wait-for /camera/color/image_raw --wait-for /clock --hold-clock

What ``ros2 bag play --clock -r R`` does, in a form the replay harness can drive and reap:

* messages are published as stored (``Publisher.publish(bytes)``: nothing is deserialised), each
  at ``t0 + (log_time - bag_start) / rate`` of wall time, under the bag's own topic names (the node
  is remapped to them, as on the robot the bag came from);
* ``/clock`` (rosgraph_msgs/Clock) carries the bag time: ``--clock-hz`` times a wall second while
  waiting, and the message's log time just before each message, never going backwards;
* latched topics (``/tf_static``) are TRANSIENT_LOCAL with room for all their messages, so a node
  that subscribes late still gets the static tree;
* playback starts only once every ``--wait-for`` topic has a subscriber (bounded), so discovery does
  not eat the first frames;
* with ``--hold-clock`` the clock keeps running at ``rate`` after the bag ends, until SIGTERM: the
  node's timers (diagnostics) and the questions asked "after the last frame" live in bag time too.

A truncated or corrupt bag stops playback at the damage, with the reason in the summary (the
clock still holds, so the node can be asked about what it saw). The summary JSON (``--summary-file``,
and the last line of stdout) counts what was published and how late.

Process rules of the package: rclpy's signal handlers off, our own SIGTERM/SIGINT handler, a private
context, and a strict shutdown order.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "message_class"]

EXIT_OK, EXIT_BAG_ERROR, EXIT_SETUP = 0, 3, 2


def message_class(msgtype: str) -> Any:
    """``sensor_msgs/msg/Image`` → the rclpy message class (its package must be installed)."""
    pkg, _, name = msgtype.partition("/msg/")
    if not pkg or not name:
        raise ValueError(f"not a message type name: {msgtype!r}")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"message type {msgtype} is not installed here ({exc}); it cannot be published") from None


def _write_json(path: str, data: dict[str, Any]) -> None:
    if not path:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m ros3d_agent.replay.player", description="play a bag's raw messages with /clock")
    ap.add_argument("--bag", required=True, help="rosbag2 directory or .mcap file")
    ap.add_argument("--topic", action="append", default=[], help="bag topic to play (repeatable; default: all playable)")
    ap.add_argument("--latched", action="append", default=[], help="topic published TRANSIENT_LOCAL (default /tf_static)")
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed (bag seconds per wall second)")
    ap.add_argument("--clock-hz", type=float, default=100.0, help="/clock messages per wall second between messages")
    ap.add_argument("--wait-for", action="append", default=[], help="start once this topic has a subscriber (repeatable)")
    ap.add_argument("--wait-timeout", type=float, default=60.0, help="give up waiting for subscribers after this many seconds")
    ap.add_argument("--hold-clock", action="store_true", help="keep /clock running after the bag ends, until SIGTERM")
    ap.add_argument("--ready-file", default="", help="written 'playing' when playback starts")
    ap.add_argument("--summary-file", default="", help="JSON summary, written when the bag ends (and again at exit)")
    args = ap.parse_args(argv)
    if not 0 < args.rate <= 100 or not 1 <= args.clock_hz <= 1000:
        ap.error("--rate must be in (0, 100] and --clock-hz in [1, 1000]")
    if not args.latched:
        args.latched = ["/tf_static"]
    return args


def _stats_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "p95": 0.0, "max": 0.0}
    s = sorted(values)
    return {"mean": round(1e3 * sum(s) / len(s), 3), "p95": round(1e3 * s[min(len(s) - 1, int(0.95 * len(s)))], 3),
            "max": round(1e3 * s[-1], 3)}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    from ros3d_agent.ros.dds_env import DdsEnvironmentError, prepare_dds_environment

    try:
        prepare_dds_environment()
    except DdsEnvironmentError as exc:
        print(f"player: {exc}", file=sys.stderr)
        return EXIT_SETUP
    from ros3d_agent.replay.bag_source import BagOpenError, BagReadError, BagSource

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    summary: dict[str, Any] = {"bag": args.bag, "rate": args.rate, "finished": False, "error": None}
    try:
        source = BagSource(args.bag)
        missing = [t for t in args.topic if t not in source.topics]
        if missing:
            raise BagOpenError(f"topic(s) {', '.join(missing)} not in the bag (it has {', '.join(sorted(source.topics))})")
        topics = {t: source.topics[t] for t in (args.topic or source.topics)}
        classes = {}
        for t, b in topics.items():
            try:
                classes[t] = message_class(b.msgtype)
            except ValueError:
                if args.topic:  # asked for by name: an error; otherwise skip what cannot be published here
                    raise
                print(f"player: skipping {t}: {b.msgtype} is not installed", file=sys.stderr)
    except (BagOpenError, KeyError, ValueError) as exc:
        summary["error"] = f"cannot play {args.bag}: {exc}"
        print(f"player: {summary['error']}", file=sys.stderr)
        _write_json(args.summary_file, summary)
        return EXIT_SETUP

    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from rosgraph_msgs.msg import Clock

    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("ros3d_replay_player", context=context)
    code = EXIT_OK
    try:
        pubs = {}
        for t, cls in classes.items():
            if t in args.latched:
                qos = QoSProfile(depth=max(1, topics[t].count or 1), reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            else:
                qos = QoSProfile(depth=100 if cls.__name__ == "TFMessage" else 10, reliability=ReliabilityPolicy.RELIABLE)
            pubs[t] = node.create_publisher(cls, t, qos)
        clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        waits = {t: (pubs[t] if t in pubs else clock_pub if t == "/clock" else None) for t in args.wait_for}
        unknown = [t for t, p in waits.items() if p is None]
        if unknown:
            raise ValueError(f"--wait-for {unknown}: not a played topic")
        start_ns = source.start_ns
        last_clock = [start_ns]

        def publish_clock(ns: int) -> None:
            ns = max(last_clock[0], int(ns))
            last_clock[0] = ns
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = divmod(ns, 1_000_000_000)
            clock_pub.publish(msg)

        t_wait = time.monotonic()
        while not stop.is_set() and any(p.get_subscription_count() == 0 for p in waits.values()):
            publish_clock(start_ns)
            if time.monotonic() - t_wait > args.wait_timeout:
                missing = [t for t, p in waits.items() if p.get_subscription_count() == 0]
                raise TimeoutError(f"no subscriber on {', '.join(missing)} after {args.wait_timeout:.0f} s")
            stop.wait(0.02)
        stop.wait(0.3)  # let the matched subscribers finish their side of discovery
        summary["waited_for_subscribers_s"] = round(time.monotonic() - t_wait, 3)
        if args.ready_file:
            Path(args.ready_file).write_text("playing")

        published: Counter[str] = Counter()
        lateness: list[float] = []
        period = 1.0 / args.clock_hz
        t0 = time.monotonic()
        publish_clock(start_ns)
        try:
            for m in source.messages({t: t for t in pubs}):
                target = t0 + (m.log_time_ns - start_ns) / 1e9 / args.rate
                while not stop.is_set():
                    now = time.monotonic()
                    if now >= target:
                        break
                    publish_clock(start_ns + int((now - t0) * args.rate * 1e9))
                    stop.wait(min(target - now, period))
                if stop.is_set():
                    break
                publish_clock(m.log_time_ns)
                pubs[m.topic].publish(m.raw)
                published[m.topic] += 1
                lateness.append(max(0.0, time.monotonic() - target))
        except BagReadError as exc:
            summary["error"] = str(exc)
            code = EXIT_BAG_ERROR
            print(f"player: {exc}", file=sys.stderr, flush=True)
        summary.update({
            "finished": True, "interrupted": stop.is_set(), "published": dict(published), "messages": sum(published.values()),
            "bag_seconds": round((last_clock[0] - start_ns) / 1e9, 6), "wall_seconds": round(time.monotonic() - t0, 3),
            "lateness_ms": _stats_ms(lateness),
        })
        _write_json(args.summary_file, summary)
        print(json.dumps(summary), flush=True)
        t_end, ns_end = time.monotonic(), last_clock[0]
        while args.hold_clock and not stop.is_set():
            publish_clock(ns_end + int((time.monotonic() - t_end) * args.rate * 1e9))
            stop.wait(period)
        summary["clock_held_s"] = round(time.monotonic() - t_end, 3)
        _write_json(args.summary_file, summary)
    except (TimeoutError, ValueError) as exc:
        summary["error"] = str(exc)
        print(f"player: {exc}", file=sys.stderr, flush=True)
        _write_json(args.summary_file, summary)
        code = EXIT_SETUP
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return code


if __name__ == "__main__":
    sys.exit(main())
