from ember_core import RobotType, hookimpl

@hookimpl
def ember_robot_types():
    return [RobotType(id='cart', name="Cart", description="Site cart.", capabilities=["carry"], limitations=["slow"], environments=["indoor"])]
