"""ROS 2 adapter of edge_geoloc: the node converts messages and calls the library, nothing more."""
