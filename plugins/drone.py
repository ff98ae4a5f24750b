"""Drone: the fastest robot type, for aerial surveillance, inspection and light transport."""
from __future__ import annotations

from ember_core import RobotType, hookimpl

DRONE = RobotType(
    id="drone",
    name="Drone",
    description="Multirotor aerial robot that reaches high or distant places quickly.",
    capabilities=["fastest", "aerial navigation", "surveillance", "lightweight transport", "aerial inspection"],
    limitations=["limited payload", "loud", "weather dependent", "battery life"],
    environments=["outdoor", "large indoor spaces", "hard to reach areas"],
    roles=["aerial survey", "scouting", "overwatch", "light delivery"],
    examples=[
        "Photograph the roof of the town hall for missing tiles.",
        "Fly along the high-voltage power line and look for damaged insulators.",
        "Map the whole construction site from above every Friday.",
        "Count the deer grazing across the nature reserve.",
        "Look for the missing child across the open fields and woodland edges.",
        "Get aerial video of the marathon route for the broadcast.",
        "Check the top of the telecom mast for a loose antenna.",
        "Drop a small first-aid kit to a climber stranded on a ledge.",
        "Scan the crop fields for patches of disease from the air.",
        "Watch the traffic jam on the motorway and report where it ends.",
        "Inspect the facade of the skyscraper for cracked glass panels.",
        "Survey the eroding cliffs along the coastline after the winter storms.",
        "Fly over the forest and spot new smoke from a wildfire.",
        "Check the gutters and chimney of the house without a ladder.",
        "Deliver a blood sample from the clinic to the hospital across town by air.",
        "Read the barcodes on the top shelves of the high-bay warehouse.",
        "Inspect the underside of the motorway bridge deck and its cables.",
        "Give the fire crew an overhead view of the burning factory roof.",
        "Measure the size of the oil slick on the sea from above.",
        "Follow the herd of cattle across the ranch and count them.",
        "Look at the wind turbine blades for lightning damage.",
        "Survey the flooded valley from the air to find stranded people.",
        "Film the wedding party from overhead in the garden.",
        "Check the flare stack at the top of the refinery while it is running.",
        "Monitor the crowd at the stadium exits after the match.",
        "Scout the river ahead of the rafting team for fallen trees.",
        "Take thermal images of the solar farm to find faulty panels.",
        "Patrol the long border fence of the estate and report breaches.",
        "Inspect the cooling tower's rim for spalling concrete.",
        "Carry a light spare part to the crew on the far side of the gorge.",
        "Check the spire of the cathedral for loose stonework.",
        "Track the flock of migrating geese over the estuary.",
        "Bring a defibrillator by air to the village cut off by snow.",
        "Check the beacon light at the top of the radio tower.",
        "Search the wide desert from the air for the broken-down jeep.",
        "Film the sailing race from above the water.",
        "Take pictures of the tall chimney of the old brickworks.",
        "Fly over the flooded farmland and show where the water has spread.",
        "Inspect the top of the stadium floodlights.",
        "Survey the landslide on the mountainside from above.",
        "Get an overview of the traffic accident on the highway for the police.",
        "Check the crane's jib at the top of the building site.",
        "Drop a life ring to the swimmer in trouble off the beach.",
        "Count the cars in the car park from overhead.",
        "Scan the glacier's surface for new crevasses.",
    ],
    excluded_scenes=["underwater"],
)


@hookimpl
def ember_robot_types() -> list[RobotType]:
    return [DRONE]
