"""Starts the Ember selector node: `ros2 launch ember_ros selector.launch.py image_topic:=/camera/image_raw`.

Arguments, parameters and remaps come from ember_ros.launch_defaults, which the tests check against
the `selector` executable.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ember_ros import launch_defaults


def _selector_node(context):
    values = {argument.name: LaunchConfiguration(argument.name).perform(context) for argument in launch_defaults.ARGUMENTS}
    return [
        Node(
            package=launch_defaults.PACKAGE,
            executable=launch_defaults.EXECUTABLE,
            name=launch_defaults.NODE_NAME,
            namespace=values["namespace"],
            parameters=[values["params_file"], launch_defaults.parameter_overrides(values)],
            remappings=launch_defaults.remappings(values),
            arguments=["--ros-args", "--log-level", values["log_level"]],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument(argument.name, default_value=argument.default, description=argument.description)
        for argument in launch_defaults.ARGUMENTS
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=_selector_node)])
