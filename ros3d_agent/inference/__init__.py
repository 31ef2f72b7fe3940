"""The inference engine used by the node, evaluation and replay (no rclpy here).

Keyframes are encoded once (vision tower + projector + 3D code) and cached by the caller, so a
query pays only for the language model; see engine.SceneEngine.
"""
