"""Exceptions raised by the scene layer.

They subclass the builtin a caller would naturally catch (``ValueError`` for bad data), so code
outside this package does not need to import them to handle them, while code that wants to tell a
bad frame from a bad directory can.
"""

from __future__ import annotations

__all__ = ["SceneError", "InvalidFrameError", "InvalidBoxError", "SceneDirError", "FrameLoadError"]


class SceneError(Exception):
    """Base class for every error raised by ``ros3d_agent.scene``."""


class InvalidFrameError(SceneError, ValueError):
    """A :class:`~ros3d_agent.scene.types.Frame` was built from inconsistent or malformed data."""


class InvalidBoxError(SceneError, ValueError):
    """A :class:`~ros3d_agent.scene.types.Box3D` was built with a bad centre, size or yaw."""


class SceneDirError(SceneError, ValueError):
    """A scene directory is missing, incomplete or holds a file that cannot be parsed."""


class FrameLoadError(SceneDirError):
    """One frame of a scene directory cannot be loaded.

    ``reason`` is a short stable code (e.g. ``"nonfinite_pose"``, ``"unreadable_color"``) so that
    :meth:`SceneDir.iter_frames` can count skips per cause; the message carries the detail.
    """

    def __init__(self, message: str, *, reason: str, frame_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.frame_id = frame_id
