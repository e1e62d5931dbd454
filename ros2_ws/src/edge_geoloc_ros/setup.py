"""ament_python package of the edge_geoloc ROS 2 node (built with colcon)."""

from glob import glob

from setuptools import find_packages, setup

package_name = "edge_geoloc_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="edge-geoloc maintainers",
    maintainer_email="edge-geoloc@example.com",
    description="Thin rclpy node over the edge_geoloc runtime",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["geoloc_node = edge_geoloc_ros.node:main"]},
)
