"""Robot with Legs: stable locomotion and load carrying over rough terrain and stairs."""
from __future__ import annotations

from ember_core import RobotType, hookimpl

ROBOT_WITH_LEGS = RobotType(
    id="robot_with_legs",
    name="Robot with Legs",
    description="Quadruped that walks over uneven ground, rubble and stairs while carrying sensors or loads.",
    capabilities=["rough terrain navigation", "stability", "load carrying", "inspection"],
    limitations=["limited manipulation", "height restrictions"],
    environments=["outdoor", "uneven terrain", "stairs", "industrial sites", "search and rescue"],
    roles=["ground inspection", "search", "carrying loads over rough terrain"],
    examples=[
        "Search the rubble of the collapsed building for survivors.",
        "Climb the stairs of the factory and inspect the gauges on each level.",
        "Carry supplies up the rocky mountain trail to the hut.",
        "Walk through the forest over fallen logs to check the camera traps.",
        "Inspect the offshore platform's decks, ladders and gratings.",
        "Carry the equipment across the muddy field to the well.",
        "Patrol the construction site with its trenches and piles of gravel.",
        "Explore the cave and map its passages.",
        "Walk the pipeline route across the rough hills and look for leaks.",
        "Take samples from the slopes of the volcano.",
        "Check the electrical substation yard on its gravel ground.",
        "Carry a load of tools up the stairs to the roof.",
        "Inspect the tunnels of the mine with their uneven floors.",
        "Deliver water to the team across the snowy slope.",
        "Walk the hiking trail and report fallen trees.",
        "Go through the earthquake debris and find a way for the rescuers.",
        "Carry the sandbags along the riverbank to the broken levee.",
        "Inspect the railway track ballast and sleepers along the line.",
        "Climb over the boulders on the beach to reach the stranded seal.",
        "Patrol the vineyard rows on the steep hillside.",
        "Climb the stairwell of the burning apartment block to check each floor.",
        "Carry the heavy camera gear through the jungle.",
        "Walk the sand dunes to record the nesting birds.",
        "Inspect the steel beams and walkways of the chemical plant.",
        "Carry spare parts across the rocky quarry floor.",
        "Cross the mountain stream's stony bank with the sensors.",
        "Check the farm's fields and fences over the rough pasture.",
        "Explore the ruins of the old castle over broken walls.",
        "Carry medical supplies through the flooded, muddy village streets.",
        "Inspect the dark basement with its steps and clutter after the storm.",
        "Bring the toolkit across the rough, rutted pasture to the broken water pump.",
        "Carry the radio repeater up the rocky ridge to the summit mast.",
        "Bring the rescue kit down the icy mountain path.",
        "Walk across the rubble-strewn street after the explosion and look for gas leaks.",
        "Climb the steps of the old tower carrying the radio.",
        "Cross the marsh and check the water level gauges.",
        "Walk the overgrown canal towpath and look for breaches in the bank.",
        "Carry supplies to the camp across the boulder field.",
        "Walk the forest trail after the storm and check the signposts.",
        "Go up and down the metal stairs of the ship's engine room and read the dials.",
        "Carry the water jugs up the steep village lanes with steps.",
        "Explore the lava field and take gas readings.",
    ],
    excluded_scenes=["underwater"],
)


@hookimpl
def ember_robot_types() -> list[RobotType]:
    return [ROBOT_WITH_LEGS]
