"""ros3d_agent: grounded 3D question answering for ROS 2 robots."""
__version__ = "0.1.0"
