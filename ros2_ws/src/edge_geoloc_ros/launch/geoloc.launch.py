"""
Launch the edge_geoloc node with its parameter file and topic remappings.

    ros2 launch edge_geoloc_ros geoloc.launch.py params_file:=/path/params.yaml \
        image_topic:=/cam/image_raw

Parameter defaults live in the library schema (and the generated config/params.yaml); this file
only chooses the parameter file and maps the node's relative topics onto the robot's.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

REMAPPED_TOPICS = {
    # node topic: (launch argument, default robot topic)
    "image": ("image_topic", "/camera/image_raw"),
    "image/compressed": ("compressed_image_topic", "/camera/image_raw/compressed"),
    "gnss/fix": ("gnss_topic", "/gnss/fix"),
    "gnss/vel": ("gnss_velocity_topic", "/gnss/vel"),
    "heading": ("heading_topic", "/heading"),
    "imu": ("imu_topic", "/imu/data"),
    "altitude_agl": ("altitude_agl_topic", "/altitude_agl"),
    "camera_info": ("camera_info_topic", "/camera/camera_info"),
}


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution(
        [FindPackageShare("edge_geoloc_ros"), "config", "params.yaml"]
    )
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=default_params,
            description="ROS 2 parameter YAML for the edge_geoloc node",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument(
            "use_sim_time",
            default_value="false",
            description="true when playing a bag with `ros2 bag play --clock`",
        ),
    ]
    arguments += [
        DeclareLaunchArgument(arg, default_value=topic, description=f"topic remapped to `{name}`")
        for name, (arg, topic) in REMAPPED_TOPICS.items()
    ]
    node = Node(
        package="edge_geoloc_ros",
        executable="geoloc_node",
        name="edge_geoloc",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("params_file"),
            {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)},
        ],
        remappings=[
            (name, LaunchConfiguration(arg)) for name, (arg, _) in REMAPPED_TOPICS.items()
        ],
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription([*arguments, node])
