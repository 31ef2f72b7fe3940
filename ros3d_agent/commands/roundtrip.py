"""`ros3d-agent roundtrip`: images to a second ROS 2 process, SceneAnswers back, all checked."""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--count", type=int, default=30, help="images to send (default 30)")
    parser.add_argument("--rate", type=float, default=15.0, help="send rate in Hz (default 15)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--verbose", action="store_true", help="print every answer as it arrives")


def print_report(report) -> None:
    lat = report.latency_summary()
    print(f"sent {report.sent}, answered {report.received}, CRC ok {report.crc_ok}, CRC bad {report.crc_bad}, "
          f"nested fields ok {report.nested_fields_ok}")
    if lat:
        print(f"round-trip latency ms: p50 {lat['p50']:.1f}, p95 {lat['p95']:.1f}, max {lat['max']:.1f}; "
              f"discovery {report.discovery_s:.2f} s; echo pid {report.peer_pid} exit code {report.peer_exit_code}")
    print("round trip: " + ("PASSED" if report.ok else "FAILED"))


def main(args) -> int:
    from ros3d_agent.ros.roundtrip import run_roundtrip

    def show(msg) -> None:
        print(f"  answer {msg.query_id}: {msg.text}  (objects {len(msg.objects)}, keyframes {len(msg.keyframe_stamps)})")

    report = run_roundtrip(count=args.count, rate_hz=args.rate, height=args.height, width=args.width,
                           timeout_s=args.timeout, on_answer=show if args.verbose else None)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report)
    return 0 if report.ok else 1
