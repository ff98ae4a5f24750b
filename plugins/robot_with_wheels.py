"""Robot with Wheels: fast, efficient transport of heavy loads on flat ground."""
from __future__ import annotations

from ember_core import RobotType, hookimpl

ROBOT_WITH_WHEELS = RobotType(
    id="robot_with_wheels",
    name="Robot with Wheels",
    description="Wheeled ground vehicle that carries good payloads quickly over flat surfaces.",
    capabilities=["fast movement", "good payload", "stable platform", "efficient"],
    limitations=["flat surfaces only", "limited climbing", "obstacle avoidance"],
    environments=["indoor", "warehouse", "flat outdoor areas", "roads"],
    roles=["transport", "delivery", "mobile base"],
    examples=[
        "Move the boxes from the loading dock to the storage racks in the warehouse.",
        "Deliver the meals from the kitchen to the rooms along the hotel corridor.",
        "Transport the medicines from the pharmacy to the wards on the same floor.",
        "Carry the heavy parts along the factory floor to the assembly line.",
        "Tow the luggage trolleys from the check-in hall to the aircraft.",
        "Bring the parcels down the pavement to the houses on the street.",
        "Patrol the underground car park at night.",
        "Drive the pallets of bricks across the paved yard.",
        "Take the food orders across the university campus paths.",
        "Move the carts of library books between the reading rooms.",
        "Shuttle the crates of vegetables along the greenhouse rows.",
        "Carry the office furniture down the long corridor to the new room.",
        "Deliver the documents to every desk on the office floor.",
        "Transport the laboratory samples along the hospital corridor.",
        "Drive along the road tunnel and check the lights.",
        "Carry the tools across the flat concrete site to the workers.",
        "Bring the heavy water bottles from the van to the office kitchen.",
        "Move the stock from the back room to the shop floor.",
        "Haul the rubbish bins from the courtyard to the street.",
        "Drive the shopping cart behind the customer in the supermarket.",
        "Deliver the spare parts between the workshops on the industrial estate roads.",
        "Tow the wagons of components around the car factory.",
        "Carry the luggage from the hotel entrance to the rooms by the lift.",
        "Transport the beer kegs across the brewery floor.",
        "Patrol the aisles of the shopping centre after closing time.",
        "Bring the dirty linen from the rooms to the laundry.",
        "Deliver packages around the airport terminal's flat floors.",
        "Move the heavy server racks across the data centre floor.",
        "Carry the harvested fruit along the farm track to the barn.",
        "Drive the warehouse aisles and scan the inventory labels on the lower shelves.",
        "Move the pallets from the lorry to the racks in the distribution centre.",
        "Bring the breakfast trays down the corridor of the care home.",
        "Carry the heavy boxes of files across the office to the archive room.",
        "Deliver the dry cleaning to the rooms on the ground floor of the hotel.",
        "Bring the crates from the stockroom to the checkout tills.",
        "Transport the cases of wine along the cellar's smooth floor.",
        "Haul the drums of paint across the level factory yard.",
        "Drive the airport's tarmac and deliver the catering carts to the planes.",
        "Carry the tables and chairs across the sports hall floor.",
        "Deliver parcels along the tarmac paths of the business park.",
        "Take the recycling crates down the ramp to the car park.",
        "Move the patients' bags from reception to the ward by the lift.",
    ],
    excluded_scenes=["underwater"],
)


@hookimpl
def ember_robot_types() -> list[RobotType]:
    return [ROBOT_WITH_WHEELS]
