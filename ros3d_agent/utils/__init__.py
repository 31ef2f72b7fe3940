"""Small helpers shared by every part of the package (no ROS, no torch at import time)."""
