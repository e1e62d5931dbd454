"""The synthetic world: areas in city styles, drone and ground views, datasets in real layouts, flights.

Quick start::

    from edge_geoloc.sim import generate_area, DronePose, PinholeCamera, render_drone_view
    area = generate_area("source", seed=1, size_m=1000, gsd_m=0.5)
    image = render_drone_view(area, DronePose(0, 0, 120, heading_rad=0.3), PinholeCamera(256, 256, 60))
"""

from edge_geoloc.sim.area import Area, generate_area, load_area
from edge_geoloc.sim.camera import DronePose, PinholeCamera, project_points
from edge_geoloc.sim.datasets import write_university_tree, write_vigor_tree
from edge_geoloc.sim.flight import Flight, FlightConfig, load_flight, simulate_flight
from edge_geoloc.sim.gnss import GnssNoiseConfig, gnss_preset
from edge_geoloc.sim.ground import render_ground_panorama, render_ground_pinhole, sample_street_points
from edge_geoloc.sim.layout import BUILDING_COLUMNS, CLASS_NAMES, Scene
from edge_geoloc.sim.render import render_drone_view
from edge_geoloc.sim.styles import Style, builtin_style_names, get_style, load_style

__all__ = [
    "BUILDING_COLUMNS", "CLASS_NAMES", "Area", "DronePose", "Flight", "FlightConfig", "GnssNoiseConfig",
    "PinholeCamera", "Scene", "Style", "builtin_style_names", "generate_area", "get_style", "gnss_preset",
    "load_area", "load_flight", "load_style", "project_points", "render_drone_view", "render_ground_panorama",
    "render_ground_pinhole", "sample_street_points", "simulate_flight", "write_university_tree",
    "write_vigor_tree",
]
