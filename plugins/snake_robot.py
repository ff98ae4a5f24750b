"""Snake Robot: an example plugin shipped outside the default fleet, for pipes, ducts and rubble gaps.

It is not named in the default robots.yaml; add `- plugin: ember_plugins.snake_robot` to a fleet's
robots.yaml to use it (tests/data/robots_with_snake.yaml does).
"""
from __future__ import annotations

from ember_core import RobotType, hookimpl

SNAKE_ROBOT = RobotType(
    id="snake_robot",
    name="Snake Robot",
    description="Slender tethered multi-link robot that slides through dry pipes, ducts, crevices and rubble gaps.",
    capabilities=[
        "confined space navigation",
        "pipe and duct inspection",
        "search in rubble gaps",
        "climbing inside vertical pipes",
    ],
    limitations=["slow movement", "negligible payload", "short tether range", "dry environments only"],
    environments=["dry pipes", "ducts", "crevices", "rubble gaps", "wall cavities", "crawl spaces"],
    roles=["confined space inspection", "void search in rubble", "threading lines and cables"],
    examples=[
        "Inspect the inside of the narrow exhaust pipe for cracks.",
        "Crawl through the air-conditioning ducts and find the blockage.",
        "Look inside the wall cavity for the damaged wires.",
        "Search the small gaps in the collapsed rubble for trapped people.",
        "Check the inside of the boiler tubes for scale.",
        "Crawl under the floorboards and find the source of the smell.",
        "Inspect the heat exchanger tubes of the refinery from inside.",
        "Pull a cable through the conduit behind the wall.",
        "Look into the crevice between the rocks where the cat is stuck.",
        "Climb up inside the vertical drainpipe and find the clog.",
        "Inspect the narrow crawl space under the house for termites.",
        "Check inside the engine through the small access hole.",
        "Explore the gap behind the machinery where no one can reach.",
        "Search the narrow voids of the pancaked building for a victim.",
        "Inspect the inside of the dry gas pipe for corrosion.",
        "Look inside the chimney flue for a blockage.",
        "Crawl through the cable tray tunnel under the control room.",
        "Check the inside of the aircraft wing through the inspection port.",
        "Snake through the ventilation shaft and film its inside.",
        "Inspect the narrow gap between the tank and the wall.",
        "Look into the tight gap behind the fridge where the water is leaking from.",
        "Get into the narrow space behind the panel and photograph the wiring.",
        "Probe the small holes in the debris pile for signs of life.",
        "Inspect the inside of the small-bore steam pipe while the plant is shut down.",
        "Crawl along the inside of the empty sewer lateral and find the crack.",
        "Slide through the gap under the door of the sealed room and look around.",
        "Check the hollow inside of the old tree trunk for a nest.",
        "Inspect the interior of the dry storm drain for blockages.",
        "Look inside the hollow wall for the source of the scratching noise.",
        "Find the broken cable inside the underground duct.",
        "Squeeze between the tightly packed pipes in the plant room to read the hidden tag.",
        "Inspect the inside of the exhaust stack through the small hatch at its base.",
        "Search the cracks between the fallen concrete blocks for survivors.",
        "Look through the small opening into the sealed tomb and film it.",
        "Check the space under the raised floor of the server room for a loose cable.",
        "Crawl into the narrow attic eaves where nobody fits and check the insulation.",
        "Inspect the inside of the grain auger tube for a jam.",
        "Look inside the machine's housing without taking it apart.",
        "Thread the inspection camera through the ductwork above the ceiling tiles.",
        "Search inside the drainage pipe under the road for the lost kitten.",
    ],
    max_speed_mps=0.1,
    excluded_scenes=["aerial", "underwater"],  # a dry-land crawler: it can neither fly nor swim
)


@hookimpl
def ember_robot_types() -> list[RobotType]:
    return [SNAKE_ROBOT]
