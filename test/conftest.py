"""Test-session environment: DDS stays on loopback, in a domain of its own, and offline.

Set here as well as in env.sh because pytest may be started without sourcing it, and a test
that multicasts on an external interface must be impossible, not merely unlikely.
"""

from __future__ import annotations

import os
import random

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
if not os.environ.get("ROS_DISTRO"):
    os.environ.pop("RMW_IMPLEMENTATION", None)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
