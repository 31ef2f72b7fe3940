"""Rosbag replay evaluation: the same node code, fed from a recording, scored like a benchmark.

Two modes answer different questions about the same bag and question file:

* **offline** (:mod:`.offline`): the bag is read directly and every message goes, in log-time
  order and without DDS, through the node's own synchroniser, TF buffer, ingest pipeline,
  keyframe memory, scene cloud and inference engine. Nothing depends on wall time, so two runs
  give the same answers, boxes and scores: this measures the model and the keyframe policy.
* **realtime** (:mod:`.realtime`): a player process (:mod:`.player`) publishes the bag's raw CDR
  on live topics with ``/clock`` at a chosen rate, the node runs as ``ros3d-agent run`` with
  ``use_sim_time``, and the questions go through the ``AskScene`` action when the bag clock
  reaches their ``ask_at``: this measures what a robot would see (latency, drops, TF misses).

Both write the same outputs (:mod:`.results`): ``results.jsonl``, ``predictions.jsonl``,
``summary.json`` (metrics from :mod:`ros3d_agent.eval`, latency, drops, hashes) and a BEV
picture per scene. :mod:`.scenario` holds the inputs (a YAML scenario file may bundle them),
:mod:`.bag_source` reads bags (and says clearly when one is truncated or corrupt), and
:mod:`.demo` is the README demo built on the real-time mode.

Nothing here imports rclpy at module level: offline replay runs on a machine without ROS.
"""

__all__: list[str] = []
