"""Underwater Robot: navigation, inspection and manipulation below the water surface."""
from __future__ import annotations

from ember_core import RobotType, hookimpl

UNDERWATER_ROBOT = RobotType(
    id="underwater_robot",
    name="Underwater Robot",
    description="Remotely operated or autonomous submersible for marine and flooded environments.",
    capabilities=["underwater navigation", "deep sea exploration", "marine inspection", "underwater manipulation"],
    limitations=["water environments only", "communication limitations", "pressure constraints"],
    environments=["underwater", "marine", "pools", "pipes", "ocean exploration"],
    roles=["underwater inspection", "subsea manipulation", "hull and pipe survey"],
    examples=[
        "Inspect the hull of the cargo ship below the waterline.",
        "Check the dam's upstream face underwater for cracks.",
        "Follow the subsea pipeline and look for leaks.",
        "Survey the coral reef and record bleaching.",
        "Explore the shipwreck on the seabed and film it.",
        "Find the car that went into the lake.",
        "Inspect the inside of the flooded drinking-water tank without draining it.",
        "Look at the legs of the offshore oil platform beneath the waves.",
        "Clean the algae off the nets of the fish farm cages.",
        "Recover the anchor that was lost in the harbour.",
        "Map the bottom of the reservoir with sonar.",
        "Check the propeller and rudder of the ferry for damage.",
        "Inspect the water intake screens of the power plant.",
        "Take sediment samples from the bottom of the bay.",
        "Search the flooded mine shaft for the missing equipment.",
        "Check the submarine power cable where it crosses the strait.",
        "Examine the bridge piers under the river for scour.",
        "Scrub the walls and floor of the swimming pool while it is full.",
        "Inspect the flooded sewer tunnel that divers cannot enter.",
        "Count the fish in the kelp forest for the marine biologists.",
        "Weld a patch onto the damaged pipeline on the sea floor.",
        "Look for unexploded mines on the harbour bed.",
        "Explore the deep ocean trench and film its wildlife.",
        "Inspect the underwater part of the harbour flood barrier.",
        "Retrieve the diver's camera dropped at 30 m depth.",
        "Inspect the ballast tanks of the ship while they are full of water.",
        "Check the mooring chains of the floating wind turbine.",
        "Survey the sunken harbour wall for loose stones.",
        "Inspect the inside of the flooded culvert under the road.",
        "Find the leak in the aquarium's main tank from the inside.",
        "Dive to the seabed and find the black box from the crashed plane.",
        "Inspect the pier pilings below the tide line for rot.",
        "Free the rope wrapped around the boat's propeller under the water.",
        "Check the anodes on the underwater hull of the yacht.",
        "Look for leaks in the submerged intake pipe of the water works.",
        "Film the sea turtles feeding on the reef.",
        "Inspect the underside of the floating dock.",
        "Search the bottom of the river for the stolen safe.",
        "Check the condition of the sunken wreck's hull plates.",
        "Survey the lake bed before the new jetty is built.",
    ],
    required_scenes=["underwater"],
)


@hookimpl
def ember_robot_types() -> list[RobotType]:
    return [UNDERWATER_ROBOT]
