"""The synthetic world: areas in city styles, drone and ground views, datasets in real layouts, flights."""

from edge_geoloc.sim.area import Area, generate_area, load_area
from edge_geoloc.sim.styles import Style, builtin_style_names, get_style, load_style

__all__ = ["Area", "Style", "builtin_style_names", "generate_area", "get_style", "load_area", "load_style"]
