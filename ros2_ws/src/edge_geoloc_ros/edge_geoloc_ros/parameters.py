"""
Declare the node's ROS parameters from the library schema.

The schema is edge_geoloc.interop.params.NodeSettings.

Nothing is restated here: names, defaults, units, ranges and validation all come from the schema.
"""

from edge_geoloc.interop.params import (
    NodeSettings,
    descriptor_fields,
    parameter_specs,
    settings_from_parameters,
    validate_parameter,
)
from rcl_interfaces.msg import (
    FloatingPointRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)

_ROS_TYPES = {
    "bool": ParameterType.PARAMETER_BOOL,
    "integer": ParameterType.PARAMETER_INTEGER,
    "double": ParameterType.PARAMETER_DOUBLE,
    "string": ParameterType.PARAMETER_STRING,
    "string_array": ParameterType.PARAMETER_STRING_ARRAY,
}


def make_descriptor(spec) -> ParameterDescriptor:
    """Build the ParameterDescriptor of one schema entry (type, description, range, choices)."""
    fields = descriptor_fields(spec)
    descriptor = ParameterDescriptor(
        name=fields["name"],
        type=_ROS_TYPES[fields["type_name"]],
        description=fields["description"],
        additional_constraints=fields.get("additional_constraints", ""),
        read_only=fields["read_only"],
    )
    if "floating_point_range" in fields:
        low, high = fields["floating_point_range"]
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=low, to_value=high, step=0.0)
        ]
    return descriptor


def _on_set(parameters) -> SetParametersResult:
    """Refuse values the schema refuses, with its reason (also values from params.yaml)."""
    known = {spec.name for spec in parameter_specs()}
    for parameter in parameters:
        value = parameter.value
        if parameter.name not in known:  # ROS's own (use_sim_time, ...): not ours to judge
            continue
        if value is None:  # not set: the schema default applies
            continue
        if isinstance(value, list):
            value = tuple(value)
        reason = validate_parameter(parameter.name, value)
        if reason is not None:
            return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)


def declare_settings(node) -> NodeSettings:
    """Declare one parameter per schema field and return the validated settings."""
    node.add_on_set_parameters_callback(_on_set)
    for spec in parameter_specs():
        default, descriptor = spec.default, make_descriptor(spec)
        if spec.type_name == "string_array":
            default = list(default)
            # rclpy types an empty list as BYTE_ARRAY (ros2/rclpy#912) and declaring by type
            # alone fails on Jazzy (ros2/rclpy#1460): let the YAML's string list in; _on_set
            # still checks the values
            descriptor.dynamic_typing = not default
        node.declare_parameter(spec.name, default, descriptor)
    values = {spec.name: node.get_parameter(spec.name).value for spec in parameter_specs()}
    return settings_from_parameters(values)
