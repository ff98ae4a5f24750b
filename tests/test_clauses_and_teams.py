"""Task parts in time order (ember_core.clauses) and the team rule on their scores (ember_core.teams)."""
from __future__ import annotations

import numpy as np
import pytest

from ember_core.clauses import comma_pieces, is_action_verb, is_continuation, is_return, task_parts
from ember_core.limits import MAX_TASK_PARTS
from ember_core.teams import (CONTEXT_WEIGHT, CONTINUATION_MARGIN, PART_THRESHOLD, PIECE_FOREIGN, PIECE_OWN,
                               expand_pieces, part_probabilities, part_texts, plan_team)

IDS = ["drone", "underwater_robot", "humanoid", "robot_with_wheels", "robot_with_legs"]


@pytest.mark.parametrize(("task", "parts"), [
    ("Survey the dam from above, then inspect its submerged spillway gates.",
     ["Survey the dam from above", "inspect its submerged spillway gates"]),
    ("Before the divers go in, have the site mapped from the air.", ["have the site mapped from the air", "the divers go in"]),
    ("Deliver the medicine once the drone has scouted the road", ["the drone has scouted the road", "Deliver the medicine"]),
    ("Map the reef from the air and send the ROV to sample the coral",
     ["Map the reef from the air", "send the ROV to sample the coral"]),
    ("First fly over the field. Then check the culvert.", ["fly over the field", "check the culvert"]),
    ("Bring the pallet to bathroom 3, and once it's there, stack the tiles", ["Bring the pallet to bathroom 3",
                                                                              "once it's there, stack the tiles"]),
    ("Search the pit for the pump and, once it's up, carry it over the rocks to the workshop",
     ["Search the pit for the pump", "once it's up, carry it over the rocks to the workshop"]),
    ("After mapping the riverbed, walk the muddy bank", ["mapping the riverbed", "walk the muddy bank"]),
    ("Before the drums are taken up the stairs, run them across the car park",
     ["run them across the car park", "the drums are taken up the stairs"]),
    ("Walk the rows after the hailstorm and report broken posts", ["Walk the rows after the hailstorm and report broken posts"]),
    ("Drive the tanks to the trailhead, and from there carry the hoses up the hill",
     ["Drive the tanks to the trailhead", "carry the hoses up the hill"]),
    ("The fish farm manager saw seals at cage 3. Inspect its nets, then cages 4 and 5.",
     ["Inspect its nets", "cages 4 and 5"]),
    ("Film the light on the mast; the harbour master says it is flickering. Then check the next mast too.",
     ["Film the light on the mast", "check the next mast too"]),
    ("Retrieve it from the seabed and there open the casing", ["Retrieve it from the seabed", "open the casing"]),
    ("Fly the crate to the hut. Then the humanoid opens it. At the door, greet the warden.",
     ["Fly the crate to the hut", "the humanoid opens it", "At the door, greet the warden"]),
    ("The roof leaks. The gutters are blocked.", ["The roof leaks. The gutters are blocked"]),  # nothing asked
    ("Carry the posts to the fence; the hay bales go down the lane to the barn afterwards.",
     ["Carry the posts to the fence", "the hay bales go down the lane to the barn afterwards"]),
    ("Before the sleepers and ballast at the slip are inspected, survey the cutting",
     ["survey the cutting", "the sleepers and ballast at the slip are inspected"]),
    ("Once the anodes have been checked, shift the pallets to the berth",
     ["the anodes have been checked", "shift the pallets to the berth"]),
    ("We can't sort the clothes until the bags have been brought in",
     ["the bags have been brought in", "We can't sort the clothes"]),
    ("We don’t start sorting until the bags have been brought in",
     ["the bags have been brought in", "We don’t start sorting"]),
    ("Lift off, drop the ring, then hover above him until the boat arrives",
     ["Lift off, drop the ring", "hover above him until the boat arrives"]),
    ("The pumps need unboxing and clamping onto the rails, but first the pallet has to be brought to the ward",
     ["the pallet has to be brought to the ward", "The pumps need unboxing and clamping onto the rails"]),
    ("Before dark, fly to the far waterhole", ["Before dark, fly to the far waterhole"]),
    ("Inspect the roof after the storm", ["Inspect the roof after the storm"]),
    ("Search the ruins after an earthquake to find survivors", ["Search the ruins after an earthquake to find survivors"]),
    ("Inspect the fields after a harvest", ["Inspect the fields after a harvest"]),
    ("Clean the filter after inspecting the pump", ["inspecting the pump", "Clean the filter"]),
    ("Carry the crates from the loading dock to the cold room", ["Carry the crates from the loading dock to the cold room"]),
    ("Fetch my slippers.", ["Fetch my slippers"]),
    ("Check the pipes on the roof, and then, in the plant room, switch the pump off.",
     ["Check the pipes on the roof", "in the plant room, switch the pump off"]),
    ("Before filming the quay from above, unlock the gate to the yard.",
     ["unlock the gate to the yard", "filming the quay from above"]),
    ("Map the wreck, after that, winch it up to the barge", ["Map the wreck", "winch it up to the barge"]),
    ("Inspect the upper and lower decks", ["Inspect the upper and lower decks"]),
    # A later sentence opened by "before that" happens before the one written before it, which is then a step.
    ("Carry the box up the slope. Before that, look at the rim from the air.",
     ["look at the rim from the air", "Carry the box up the slope"]),
    ("Film the roof. Then check the gutters. Before that, open the hatch. Before that, unlock the gate.",
     ["Film the roof", "unlock the gate", "open the hatch", "check the gutters"]),
    ("The stadium gets photographed from above tomorrow; before that, the chairs must be driven to the stand.",
     ["the chairs must be driven to the stand", "The stadium gets photographed from above tomorrow"]),
    ("The new jetty goes in next spring. Survey the lake bed.", ["Survey the lake bed"]),
    ("Nothing goes into the tank until the pumps are switched off. Then scrub the window.",
     ["the pumps are switched off", "Nothing goes into the tank", "scrub the window"]),
    ("Nobody should tidy the office until the yard has been checked from the air",
     ["the yard has been checked from the air", "Nobody should tidy the office"]),
    ("The battery must be flown out to the raft, and first someone has to charge it",
     ["someone has to charge it", "The battery must be flown out to the raft"]),
    # Getting to the job is part of it; going somewhere and doing another job there is two parts.
    ("Go in through the cleanout and find the plug.", ["Go in through the cleanout and find the plug"]),
    ("Get in behind the panels and photograph the line", ["Get in behind the panels and photograph the line"]),
    ("Check the stacks from the air. Once that's done, head to the boiler room and reset the unit.",
     ["Check the stacks from the air", "Once that's done, head to the boiler room and reset the unit"]),
    ("Shut off the gas. Then go up to the second floor and help the residents down.",
     ["Shut off the gas", "go up to the second floor and help the residents down"]),
    ("Go down the bank, check the inlet and walk back up", ["Go down the bank, check the inlet", "walk back up"]),
    # What the operator does, or heard, is no step.
    ("Before we light the burner, check the flue.", ["Before we light the burner, check the flue"]),
    ("We heard tapping under the slab. Push a camera through the crack.", ["Push a camera through the crack"]),
    ("There's a wasp nest in the eaves; find it.", ["find it"]),
    # A list's items in one line: bullets or numbers in brackets.
    ("- drive the pallet to the crossing - from there, carry the bags up the embankment",
     ["drive the pallet to the crossing", "from there, carry the bags up the embankment"]),
    ("Culvert CV-112 under the branch line: (1) survey the flooded barrel; (2) walk the embankment above it.",
     ["survey the flooded barrel", "walk the embankment above it"]),
    ("1) fly the line 2) carry the battery along the ballast", ["fly the line", "carry the battery along the ballast"]),
    ("1. Drive the drums to the compound. 2. Patrol the car park.", ["Drive the drums to the compound", "Patrol the car park"]),
    # "and down there" splits like "and there"; "as soon as" like "once"; a later sentence ending in "first" is earlier.
    ("The pump has to go down the ladders into the engine room, and down there it must be bolted in.",
     ["The pump has to go down the ladders into the engine room", "it must be bolted in"]),
    ("Film the quay as soon as the ferry has been moored.", ["the ferry has been moored", "Film the quay"]),
    ("Fly the radio up to the ledge; someone has to pack it into the drop bag first.",
     ["someone has to pack it into the drop bag", "Fly the radio up to the ledge"]),
    ("There, unload the crates. Then fly over the roof.", ["There, unload the crates", "fly over the roof"]),
    # "then" inside one clause is an adverb; the later step starts with the clause it is in.
    ("Haul the sled to slipway 2. The harbour bed off the slipway then needs surveying.",
     ["Haul the sled to slipway 2", "The harbour bed off the slipway then needs surveying"]),
    ("Scout it from the air; the supplies are then driven down the road.",
     ["Scout it from the air", "the supplies are then driven down the road"]),
    ("Carry the SIM card over the gorge to the cabin, where it is then fitted into the router.",
     ["Carry the SIM card over the gorge to the cabin", "where it is then fitted into the router"]),
    ("Switch off the fans so that the skylights can then be inspected",
     ["Switch off the fans", "so that the skylights can then be inspected"]),
    ("survey the dam from above then inspect its gates", ["survey the dam from above", "inspect its gates"]),
    # "after which" keeps the written order; ", but before that" and ", and before that" swap it.
    ("Count the vials into the trays, after which the carts go along the corridor to the wards.",
     ["Count the vials into the trays", "the carts go along the corridor to the wards"]),
    ("Inspect the mooring chains below the surface, but before that, fly around the tower.",
     ["fly around the tower", "Inspect the mooring chains below the surface"]),
    ("Scan the stack from the air, and before that have the generator towed to berth 4.",
     ["have the generator towed to berth 4", "Scan the stack from the air"]),
    # "need to" carries the verb of a side; a ticket's label does not make its request a statement.
    ("Tow the trailer to where the tarmac ends, and from there the boxes need to go up the trail.",
     ["Tow the trailer to where the tarmac ends", "the boxes need to go up the trail"]),
    ("Museum ticket: reattach the label plates. After that, aerial photos of the dome.",
     ["Museum ticket: reattach the label plates", "aerial photos of the dome"]),
    # A sentence of several steps is no statement, whatever its first word.
    ("The tide is out. The kits get fetched from the quay once the boat has been moored.",
     ["the boat has been moored", "The kits get fetched from the quay"]),
    # "thereafter" and "and later" are sequence words; "after this" keeps the written order; "prior to" is "before".
    ("Survey the embankment from the air, and thereafter operate the sluice handwheel in the gatehouse.",
     ["Survey the embankment from the air", "operate the sluice handwheel in the gatehouse"]),
    ("Walk the sacks across the muddy field and later on at dusk fly over and count the sheep.",
     ["Walk the sacks across the muddy field", "at dusk fly over and count the sheep"]),
    ("Go under the water and look at the pipe, after this carry the sensor box along the stony bank.",
     ["Go under the water and look at the pipe", "carry the sensor box along the stony bank"]),
    ("Prior to reopening the underpass, traverse the rubble in the stairwell.",
     ["traverse the rubble in the stairwell", "reopening the underpass"]),
])
def test_task_parts_split_at_sequence_words_in_time_order(task, parts):
    assert task_parts(task) == parts


def test_a_task_of_many_steps_keeps_its_first_parts_and_joins_the_rest():
    task = ", then ".join(f"inspect tank {i}" for i in range(30))
    parts = task_parts(task)
    assert len(parts) == MAX_TASK_PARTS and parts[0] == "inspect tank 0"
    assert parts[-1].startswith(f"inspect tank {MAX_TASK_PARTS - 1}, then") and parts[-1].endswith("inspect tank 29")


def test_action_verbs_are_recognised_with_their_endings_only():
    words = ("inspects delivered carrying Fly mapping dropped carries ferried taken brought recalibrate reattached "
             "rocky mountain ladder bed remote recent")
    assert [word for word in words.split() if is_action_verb(word)] == [
        "inspects", "delivered", "carrying", "Fly", "mapping", "dropped", "carries", "ferried", "taken", "brought",
        "recalibrate", "reattached"]


def test_parts_that_go_back_are_told_from_a_back_door():
    assert [is_return(part) for part in ("come back down the ridge", "bring the empty ones back", "return to the lift",
                                         "walk back up the slope", "unload at the back door", "open the back of the van",
                                         "pack the backpack", "back in the lab, split the cores open",
                                         "hand the ring back to her at the desk",
                                         "when the tide is back in, inspect the foot of the wall",
                                         "reset the relay and rack breaker 2 back in", "turn the valve back on by hand",
                                         "carry the sandbags down the back stairs", "drive back to the depot")] == [
        True, True, True, True, False, False, False, False, False, False, False, False, False, True]


def test_a_part_that_goes_back_is_done_by_whoever_went_there():
    parts = ["tow the luggage train to stand 14", "bring the empty one back"]
    rows = probabilities([0, 0, 0.1, 0.9, 0], [0, 0, 0.8, 0.2, 0])
    plan = plan_team(parts, rows, np.ones(5, bool), IDS)
    assert plan.team == ()
    assert plan_team([parts[0], "unpack the cases"], rows, np.ones(5, bool), IDS).team == ("robot_with_wheels", "humanoid")
    assert plan_team(list(reversed(parts)), rows, np.ones(5, bool), IDS).team == ("robot_with_wheels", "humanoid")


def probabilities(*rows):
    return np.array(rows, dtype=float)


def test_parts_best_done_by_different_top_robots_are_a_team_in_part_order():
    parts = ["survey the dam from above", "inspect its submerged gates"]
    plan = plan_team(parts, probabilities([0.8, 0.2, 0, 0, 0.1], [0.1, 0.9, 0, 0, 0.2]), np.ones(5, bool), IDS)
    assert plan.team == ("drone", "underwater_robot")
    assert plan.steps == (("survey the dam from above", "drone"), ("inspect its submerged gates", "underwater_robot"))


def test_one_robot_best_at_every_part_is_no_team_and_weak_parts_follow_the_job_before():
    parts = ["pick up the parcel at reception", "take it to office 12", "patrol the south wing"]
    same = probabilities([0, 0, 0.7, 0.4, 0], [0, 0, 0.6, 0.5, 0], [0, 0, 0.9, 0.2, 0])
    assert plan_team(parts, same, np.ones(5, bool), IDS).team == ()
    weak = probabilities([0, 0, 0.7, 0.1, 0], [0, 0, 0.05, PART_THRESHOLD / 2, 0], [0, 0, 0.1, 0.6, 0])
    plan = plan_team(parts, weak, np.ones(5, bool), IDS)
    assert plan.steps == (("pick up the parcel at reception, then take it to office 12", "humanoid"),
                          ("patrol the south wing", "robot_with_wheels"))


@pytest.mark.parametrize(("part", "continues"), [
    ("do the same at the sand pit across the road", True), ("then repeat it at the south transect", True),
    ("carry on to the second valve", True), ("check the next mast too", True), ("cages 4 and 5", True),
    ("once it's up", True), ("carry the crates to the van", False), ("walk the ridge", False),
    ("the drums are taken up the stairs", False), ("tow the trailer to the gate as before", False),
    ("confirm the beacons are lit again", False), ("where the scan shows silt", True),
    ("the south field, where the sheep have broken through", True), ("anything goes into the shaft to search it", False),
    ("send us his position", True), ("report broken lamps", True),  # whoever did the step reports on it
])
def test_a_part_that_repeats_the_step_before_or_has_no_verb_is_a_continuation(part, continues):
    assert is_continuation(part) is continues


def test_a_continuation_is_done_by_whoever_did_the_step_before_unless_another_robot_clearly_leads():
    parts = ["measure the stockpiles from above", "do the same at the sand pit"]
    rows = probabilities([0.9, 0, 0, 0, 0.2], [0.4, 0, 0, 0, 0.4 + CONTINUATION_MARGIN - 0.01])
    assert plan_team(parts, rows, np.ones(5, bool), IDS).team == ()
    lead = probabilities([0.9, 0, 0, 0, 0.2], [0.4, 0, 0, 0, 0.4 + CONTINUATION_MARGIN + 0.01])
    assert plan_team(parts, lead, np.ones(5, bool), IDS).team == ("drone", "robot_with_legs")
    assert plan_team([parts[0], "walk the sand pit"], rows, np.ones(5, bool), IDS).team == ("drone", "robot_with_legs")
    assert plan_team(list(reversed(parts)), rows, np.ones(5, bool), IDS).team == ("drone", "robot_with_legs")


def test_any_free_feasible_robot_can_be_in_a_team_and_no_other():
    parts = ["fly over the field", "walk the ridge", "swim the lake"]
    rows = probabilities([0.9, 0, 0, 0, 0.2], [0, 0, 0, 0, 0.9], [0, 0.9, 0, 0, 0])
    assert plan_team(parts, rows, np.ones(5, bool), IDS).team == ("drone", "robot_with_legs", "underwater_robot")
    busy_drone = np.array([False, True, True, True, True])
    plan = plan_team(parts, rows, busy_drone, IDS)
    assert plan.team == ("robot_with_legs", "underwater_robot")
    assert plan.steps == (("fly over the field, then walk the ridge", "robot_with_legs"),
                          ("swim the lake", "underwater_robot"))
    assert plan_team(["one part"], rows[:1], np.ones(5, bool), IDS).team == ()
    assert plan_team(parts, rows, np.zeros(5, bool), IDS).team == ()


def test_each_part_after_the_first_is_also_scored_after_the_part_before_it():
    assert part_texts(["tow the train to stand 14", "fetch the empty one", "park it"]) == [
        "tow the train to stand 14", "fetch the empty one", "park it",
        "fetch the empty one (tow the train to stand 14)", "park it (fetch the empty one)"]
    alone = probabilities([0.1, 0, 0, 0.9, 0], [0, 0, 0.8, 0.2, 0], [0, 0, 0.4, 0.4, 0])
    in_context = probabilities([0, 0, 0.2, 0.9, 0], [0, 0, 0.4, 0.6, 0])
    combined = part_probabilities(np.concatenate([alone, in_context]), 3)
    np.testing.assert_allclose(combined[0], alone[0])
    np.testing.assert_allclose(combined[1:], (1 - CONTEXT_WEIGHT) * alone[1:] + CONTEXT_WEIGHT * in_context)
    parts = ["tow", "fetch the empty one", "park"]
    assert plan_team(parts, alone, np.ones(5, bool), IDS).steps == (
        ("tow", "robot_with_wheels"), ("fetch the empty one, then park", "humanoid"))
    assert CONTEXT_WEIGHT == 0.5 and plan_team(parts, combined, np.ones(5, bool), IDS).team == ()


@pytest.mark.parametrize(("part", "pieces"), [
    ("Lift the drums off the canal bed, wheel them along the towpath to the depot",
     ["Lift the drums off the canal bed", "wheel them along the towpath to the depot"]),
    ("Take off, film the quarry face, land by the gate", ["Take off", "film the quarry face", "land by the gate"]),
    ("Set them up on the bank, dive the quarry, and finish with a photo from above",
     ["Set them up on the bank", "dive the quarry", "finish with a photo from above"]),
    ("Inspect the pumps, valves and pipes", ["Inspect the pumps, valves and pipes"]),  # a list of things, not steps
    ("Check the roof, then the gutters", ["Check the roof, then the gutters"]),
    ("Go to the shed, fetch it", ["Go to the shed, fetch it"]),  # too short a piece to stand alone
    ("The far shore, inspect the pier legs", ["The far shore, inspect the pier legs"]),  # no verb before the comma
    (", ".join(f"inspect tank {i}" for i in range(MAX_TASK_PARTS + 1)),
     [", ".join(f"inspect tank {i}" for i in range(MAX_TASK_PARTS + 1))]),
])
def test_comma_pieces_are_steps_each_with_a_verb(part, pieces):
    assert comma_pieces(part) == pieces


def test_a_part_splits_into_its_pieces_only_when_a_piece_is_clearly_another_robots_work():
    parts, pieces = ["lift the drums off the bed, wheel them to the depot", "open them"], [
        ["lift the drums off the bed", "wheel them to the depot"], ["open them"]]
    rows = probabilities([0.1, 0.5, 0.1, 0.6, 0.1], [0, 0, 0.9, 0.1, 0])
    # the pieces' part_texts: each piece alone, then the second after the first
    clear = probabilities([0, PIECE_OWN, 0, PIECE_FOREIGN, 0], [0, 0.1, 0.1, 0.9, 0.2], [0, 0.3, 0.1, 0.7, 0.2])
    expanded, expanded_rows = expand_pieces(parts, rows, pieces, clear)
    assert expanded == pieces[0] + ["open them"]
    np.testing.assert_allclose(expanded_rows, np.concatenate([part_probabilities(clear, 2), rows[1:]]))
    assert plan_team(expanded, expanded_rows, np.ones(5, bool), IDS).team == (
        "underwater_robot", "robot_with_wheels", "humanoid")
    second = [[0, 0.1, 0.1, 0.9, 0.2], [0, 0.3, 0.1, 0.7, 0.2]]
    for unclear in (probabilities([0, PIECE_OWN - 0.01, 0, 0.1, 0], *second),  # not sure enough
                    probabilities([0, 0.9, 0, PIECE_FOREIGN + 0.01, 0], *second)):  # the part's robot can do it
        kept, kept_rows = expand_pieces(parts, rows, pieces, unclear)
        assert kept == parts and np.array_equal(kept_rows, rows)
    one, one_rows = expand_pieces(["park it"], rows[1:], [["park it"]], np.zeros((0, 5)))
    assert one == ["park it"] and one_rows.shape == (1, 5)
