"""One pipeline result -> the messages the node publishes and ``replay-bag`` writes (same code for both)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edge_geoloc.interop.factory import MessageFactory
from edge_geoloc.interop.navsat import fused_to_navsatfix, visual_fix_to_navsatfix
from edge_geoloc.interop.pose import fused_to_pose
from edge_geoloc.types import CameraFrame, FusedState

# Output topics, relative (the node's namespace and remappings apply); replay-bag writes them under "/".
TOPIC_FIX = "geoloc/fix"
TOPIC_POSE = "geoloc/pose"
TOPIC_VISUAL_FIX = "geoloc/visual_fix"
TOPIC_DIAGNOSTICS = "/diagnostics"
OUTPUT_TYPES = {
    TOPIC_FIX: "sensor_msgs/msg/NavSatFix",
    TOPIC_POSE: "geometry_msgs/msg/PoseWithCovarianceStamped",
    TOPIC_VISUAL_FIX: "sensor_msgs/msg/NavSatFix",
    TOPIC_DIAGNOSTICS: "diagnostic_msgs/msg/DiagnosticArray",
}


@dataclass(frozen=True)
class OutputFrames:
    """Frame ids of the outputs (REP-105) and whether visual fixes are published."""

    map_frame: str = "map"
    base_frame: str = "base_link"
    publish_visual_fix: bool = True


def state_to_messages(factory: MessageFactory, frame: CameraFrame, state: FusedState,
                      frames: OutputFrames = OutputFrames()) -> dict[str, Any]:
    """``{topic: message}`` for one processed frame.

    ``geoloc/fix`` is always there (status NO_FIX until the filter is initialised, so consumers see the node
    is alive); ``geoloc/pose`` only once initialised; ``geoloc/visual_fix`` whenever the map matching produced a
    fix, accepted by fusion or not. The pose yaw comes from the frame's heading, else the visual fix's.
    """
    messages: dict[str, Any] = {TOPIC_FIX: fused_to_navsatfix(factory, state, frames.base_frame)}
    if state.initialized:
        heading = frame.heading_rad
        if heading is None and state.visual_fix is not None:
            heading = state.visual_fix.heading_rad
        messages[TOPIC_POSE] = fused_to_pose(factory, state, frames.map_frame, heading_rad=heading)
    if frames.publish_visual_fix and state.visual_fix is not None:
        alt = state.alt_m if state.initialized else math.nan
        messages[TOPIC_VISUAL_FIX] = visual_fix_to_navsatfix(factory, state.visual_fix, alt, frame.frame_id)
    return messages

