"""The inference engine used by the ROS node, evaluation and replay (no rclpy here)."""
