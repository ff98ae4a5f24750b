"""Humanoid: manipulation, tool use and human interaction in human-made environments."""
from __future__ import annotations

from ember_core import RobotType, TaskContext, hookimpl
from ember_plugins import veto_underwater

HUMANOID = RobotType(
    id="humanoid",
    name="Humanoid",
    description="Two-armed, two-legged robot that works with human tools in spaces built for people.",
    capabilities=["manipulation", "walking", "human interaction", "complex tasks", "tool use"],
    limitations=["slow movement", "balance issues", "high power consumption"],
    environments=["indoor", "human environments", "stairs", "complex terrain"],
    roles=["manipulation", "tool operation", "assisting people"],
    examples=[
        "Open the door and turn the valve wheel in the pump room.",
        "Fold the laundry and put it away in the wardrobe.",
        "Make a cup of coffee with the office coffee machine.",
        "Hand the surgeon's tools to the nurse in the right order.",
        "Restock the supermarket shelves with tins from the trolley.",
        "Press the buttons on the control panel to restart the machine.",
        "Greet visitors in the hotel lobby and show them to the lift.",
        "Plug the network cables into the right ports of the server.",
        "Assemble the flat-pack bookcase with a screwdriver.",
        "Wash the dishes and dry them by the sink.",
        "Tidy the toys in the children's playroom into the boxes.",
        "Use the fire extinguisher on a small fire in the kitchen.",
        "Pipette the samples into the test tubes in the laboratory.",
        "Feed the patient and pour a glass of water at the bedside.",
        "Water the potted plants in the office.",
        "Change the printer cartridge and load paper into the tray.",
        "Cook an omelette on the stove.",
        "Hang the pictures on the living room wall with a hammer and nails.",
        "Take the clean sheets upstairs and make the beds in the guest rooms.",
        "Operate the lathe in the workshop to turn a part.",
        "Sort the mail into the pigeonholes in the office.",
        "Serve drinks to the guests at the reception.",
        "Read the gauges in the plant room and switch off the pump.",
        "Unlock the cabinet with the key and take out the documents.",
        "Vacuum the carpets and dust the shelves in the apartment.",
        "Help the patient stand up from the bed and walk to the bathroom.",
        "Pack the online orders into boxes and tape them shut.",
        "Guide the museum visitors and answer their questions.",
        "Change a light bulb in the ceiling lamp.",
        "Type the readings into the computer at the nurses' station.",
        "Connect the speakers and the projector cables in the conference room.",
        "Swap the full rubbish bag in the kitchen bin for a new one.",
        "File the folders back into the drawers in alphabetical order.",
        "Take the visitor's coat at the door and give them a name badge.",
        "Set the dinner table with plates, glasses and cutlery.",
        "Make the tea and bring the cups to the meeting room.",
        "Fix the loose cupboard handle with a screwdriver.",
        "Change the bedding of the hotel room and fold the towels.",
        "Help the elderly man put on his coat and walk him to the car.",
        "Refill the paper towels and soap in the washrooms.",
        "Flip the circuit breaker in the fuse box back on.",
        "Hang up the coats of the guests in the cloakroom.",
        "Arrange the flowers in vases on each table.",
        "Unload the groceries and put them in the fridge and cupboards.",
        "Wipe the windows and polish the mirrors in the bathroom.",
        "Pick up the toys from the floor and put them on the shelf.",
        "Sew the button back onto the shirt.",
        "Open the jar and pour the medicine into the cup.",
        "Rearrange the products on the shop display stand.",
        "Turn the key in the generator and check the oil with the dipstick.",
    ],
)


@hookimpl
def ember_robot_types() -> list[RobotType]:
    return [HUMANOID]


@hookimpl
def ember_robot_infeasible(robot: RobotType, context: TaskContext) -> str | None:
    return veto_underwater(robot, context, HUMANOID)
