"""Write a robots.yaml of N robots: the five built-ins plus generated single-purpose robots (tests, benchmarks).

`python tools/generated_fleet.py DIR --size 50` writes DIR/robots.yaml and DIR/generated_robots.py, a
plugin declaring up to 45 robots, each with its own specialty, place and two example requests.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

BUILT_INS = ("drone", "underwater_robot", "humanoid", "robot_with_wheels", "robot_with_legs")
# (specialty, where it works, an example request): each generated robot does one thing.
SPECIALTIES = (
    ("window cleaning", "glass facades", "Clean the windows of the glass office facade"),
    ("lawn mowing", "gardens", "Mow the lawn in the back garden"),
    ("snow clearing", "driveways", "Clear the snow from the driveway"),
    ("pool cleaning", "swimming pools", "Scrub the algae off the swimming pool walls"),
    ("fruit picking", "orchards", "Pick the ripe apples in the orchard"),
    ("weeding", "vegetable beds", "Pull the weeds between the lettuce rows"),
    ("milking", "dairy barns", "Milk the cows in the dairy barn"),
    ("welding", "shipyards", "Weld the steel plates of the ship's deck"),
    ("wall painting", "buildings", "Paint the walls of the school hallway"),
    ("bricklaying", "construction sites", "Lay the bricks for the new garden wall"),
    ("floor scrubbing", "terminals", "Scrub the terminal floor overnight"),
    ("dish washing", "restaurant kitchens", "Wash the dishes after dinner service"),
    ("laundry folding", "hotels", "Fold the clean towels from the hotel laundry"),
    ("parcel sorting", "post offices", "Sort the parcels by postcode"),
    ("shelf scanning", "supermarkets", "Scan the supermarket shelves for missing products"),
    ("tire changing", "garages", "Change the tires of the car to winter tires"),
    ("car washing", "car washes", "Wash and dry the delivery vans"),
    ("solar panel cleaning", "solar farms", "Wipe the dust off the solar panels"),
    ("chimney sweeping", "chimneys", "Sweep the soot out of the chimney"),
    ("gutter cleaning", "houses", "Clear the leaves out of the gutters"),
    ("tree pruning", "parks", "Prune the branches of the plane trees in the park"),
    ("beehive inspection", "apiaries", "Check the beehives for mites"),
    ("vine pruning", "vineyards", "Prune the grape vines before spring"),
    ("fish feeding", "fish farms", "Feed the salmon in the fish farm pens"),
    ("bed making", "hospital wards", "Make the beds in the hospital ward"),
    ("book shelving", "libraries", "Put the returned books back on the library shelves"),
    ("coffee brewing", "cafes", "Brew espresso for the cafe customers"),
    ("bartending", "bars", "Mix cocktails for the guests at the bar"),
    ("ticket checking", "train stations", "Check the passengers' tickets at the gate"),
    ("luggage handling", "airport baggage halls", "Load the suitcases onto the baggage belt"),
    ("sandbag placing", "riverbanks", "Stack sandbags along the river before the flood"),
    ("mine detection", "minefields", "Find the buried landmines in the field"),
    ("sewer inspection", "sewers", "Inspect the sewer mains for cracks"),
    ("tank cleaning", "oil tanks", "Clean the sludge from the inside of the oil tank"),
    ("hull scraping", "dry docks", "Scrape barnacles off the hull in dry dock"),
    ("grain bin inspection", "grain silos", "Check the grain silo for spoiled grain"),
    ("cable pulling", "cable ducts", "Pull the fibre cable through the duct"),
    ("sample pipetting", "laboratories", "Pipette the blood samples into the test plates"),
    ("medicine dispensing", "pharmacies", "Count and pack the prescription pills"),
    ("concrete printing", "building sites", "Print the concrete walls of the new house"),
    ("greenhouse watering", "greenhouses", "Water the tomato plants in the greenhouse"),
    ("egg collecting", "poultry farms", "Collect the eggs from the hen house"),
    ("cattle herding", "pastures", "Herd the cattle into the next pasture"),
    ("graffiti removal", "city walls", "Remove the graffiti from the underpass walls"),
    ("ice resurfacing", "ice rinks", "Resurface the ice of the skating rink"),
)
# Clear tasks of a fleet of 50 and the robot each one is for: built-ins beside generated robots that share their
# words (the Hull Scraping Robot, gen_34), and generated robots beside others that share a verb (tests/test_fleet_size.py;
# benchmarks/new_robot.py keeps every new-robot setting it chooses right on them).
CLEAR_TASKS = {
    "Inspect the hull of a tanker under the sea": "underwater_robot",
    "Open the door and turn the valve wheel in the pump room": "humanoid",
    "Carry survey equipment up a steep rocky trail to the ridge": "robot_with_legs",
    "Wash the windows of the glass tower": "gen_0",
    "Pick apples from the orchard trees": "gen_4",
    "Sort the parcels in the post office by postcode": "gen_13",
}


def generated_plugin(count: int) -> str:
    """The source of a plugin module declaring `count` generated robots (ids gen_0 ... gen_{count-1})."""
    if not 0 <= count <= len(SPECIALTIES):
        raise ValueError(f"can generate 0 to {len(SPECIALTIES)} robots, got {count}")
    cards = []
    for index, (specialty, place, example) in enumerate(SPECIALTIES[:count]):
        cards.append(
            f"    RobotType(id='gen_{index}', name={(specialty.title() + ' Robot')!r},\n"
            f"              description={f'Single-purpose robot for {specialty} in {place}.'!r},\n"
            f"              capabilities=[{specialty!r}], limitations=['does only {specialty}'],\n"
            f"              environments=[{place!r}], examples=[{example + '.'!r}]),\n")
    return ("from ember_core import RobotType, hookimpl\n\n\nROBOTS = [\n" + "".join(cards) + "]\n\n\n"
            "@hookimpl\ndef ember_robot_types():\n    return ROBOTS\n")


def write_fleet(directory: Path, size: int) -> Path:
    """Write robots.yaml (the built-ins, then generated robots up to `size`) and its plugin; return the yaml path."""
    extra = size - len(BUILT_INS)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "generated_robots.py").write_text(generated_plugin(extra), encoding="utf-8")
    entries = [f"  - plugin: ember_plugins.{robot}" for robot in BUILT_INS[:size]]
    entries += [f"  - {{plugin: generated_robots, robot: gen_{index}}}" for index in range(max(extra, 0))]
    path = directory / "robots.yaml"
    path.write_text("robots:\n" + "\n".join(entries) + "\n", encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--size", type=int, default=50, help=f"robots in the fleet, 1 to {len(BUILT_INS) + len(SPECIALTIES)}")
    args = parser.parse_args()
    print(write_fleet(args.directory, args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
