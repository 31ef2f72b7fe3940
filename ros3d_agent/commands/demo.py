"""`ros3d-agent demo`: what a new user runs first.

For now: the environment check (doctor) and a live round trip of camera images and our
answer message between two ROS 2 processes. Later it becomes the full replay demo
(synthetic scene bag -> node with the bundled model -> grounded answers).
"""

from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    parser.add_argument("--frames", type=int, default=20, help="images in the round trip (default 20)")


def main(args) -> int:
    from ros3d_agent.commands.roundtrip import print_report
    from ros3d_agent.doctor import FAIL, format_table, run_checks
    from ros3d_agent.ros.roundtrip import run_roundtrip

    color = sys.stdout.isatty()
    print("== ros3d_agent demo ==")
    print("No trained model is bundled yet: this demo checks the machine and the ROS 2 plumbing only,\n"
          "it does not answer questions about scenes.\n")
    print("-- 1/2 environment check (ros3d-agent doctor) --")
    results = run_checks()
    print(format_table(results, color=color))
    if any(r.status == FAIL for r in results):
        print("\ndemo stopped: fix the failures above first.")
        return 1

    print(f"\n-- 2/2 live round trip: {args.frames} x 640x480 rgb8 images -> echo process -> SceneAnswer back --")

    def show(msg) -> None:
        obj = msg.objects[0]
        print(f"  {msg.query_id}: '{msg.text}'  object '{obj.label}' at "
              f"({obj.center.position.x:.2f}, {obj.center.position.y:.2f}, {obj.center.position.z:.2f}) "
              f"in '{msg.header.frame_id}', {len(msg.timings)} timing(s)")

    report = run_roundtrip(count=args.frames, rate_hz=10.0, on_answer=show)
    print_report(report)
    return 0 if report.ok else 1
