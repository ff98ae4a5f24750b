import colorsys

from ember_core import RobotType, hookimpl

HUE = colorsys.rgb_to_hsv(1.0, 0.0, 0.0)[0]  # the standard library's colorsys, whatever lies beside robots.yaml


@hookimpl
def ember_robot_types():
    return [RobotType(id="signal_lamp", name="Signal Lamp", description=f"Lamp of hue {HUE:g}.", capabilities=["signal"],
                      limitations=["fixed"], environments=["indoor"])]
