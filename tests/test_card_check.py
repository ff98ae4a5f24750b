"""`ember robots check`: leave-one-out ranking of a card's examples, overlapping phrases and the verdict."""
from __future__ import annotations

import dataclasses
import json

from ember_core import Fleet, RobotType
from ember_core import card_check
from ember_core.card_check import CardCheck, ExampleCheck, Overlap, check_cards
from ember_core.cli import main

GECKO = RobotType(
    id="gecko", name="Gecko", description="Wall-climbing robot for facades and glass.",
    capabilities=["wall climbing", "window inspection"], limitations=["no payload"], environments=["facades", "pipes"],
    roles=["facade survey"],
    examples=["Climb the glass facade and check the seals.", "Inspect the window frames on the 9th floor from outside.",
              "Look at the cladding joints of the tower."])


def test_each_example_is_left_out_of_the_card_it_is_checked_against(fleet, tiny_model_dir, monkeypatch):
    sixth = Fleet([*fleet.robots, GECKO])
    seen = []
    original = card_check.Selector

    def recording(model, fleet, device):
        seen.append(fleet.robot("gecko").examples)
        return original(model, fleet=fleet, device=device)

    monkeypatch.setattr(card_check, "Selector", lambda model, fleet, device: recording(model, fleet, device))
    [check] = check_cards(sixth, ["gecko"], tiny_model_dir, device="cpu")
    assert [len(examples) for examples in seen] == [2, 2, 2]
    assert [example not in kept for example, kept in zip(GECKO.examples, seen)] == [True, True, True]
    assert [e.example for e in check.examples] == list(GECKO.examples)
    assert all(1 <= e.rank <= 6 and e.first in sixth.ids for e in check.examples)
    assert all((e.rank == 1) == (e.first == "gecko") for e in check.examples)
    assert all(o.cosine >= card_check.OVERLAP_COSINE and o.other_robot != "gecko" for o in check.overlaps)


def test_a_phrase_another_card_has_too_is_an_overlap(fleet, tiny_model_dir):
    [check] = check_cards(Fleet([*fleet.robots, dataclasses.replace(GECKO, examples=())]), ["gecko"], tiny_model_dir,
                          device="cpu")
    assert check.examples == [] and check.first_share is None and "no examples on the card" in check.verdict
    assert Overlap("pipes", "underwater_robot", "pipes", 1.0) in check.overlaps


def test_verdicts_follow_the_share_of_examples_ranked_first():
    def card(ranks):
        return CardCheck("gecko", [ExampleCheck(f"task {i}", rank, "gecko" if rank == 1 else "drone")
                                   for i, rank in enumerate(ranks)])

    assert card([1, 1, 1, 1, 2]).verdict == "gecko: distinguishable: 4 of 5 examples rank it first; the rest go to drone (1)"
    assert card([1, 1, 2, 3]).verdict.startswith("gecko: partly distinguishable: 2 of 4 examples rank it first")
    assert card([2, 3, 1]).verdict.startswith("gecko: not distinguishable: 1 of 3 examples rank it first; the rest "
                                              "go to drone (2). Add examples")


def test_cli_checks_a_robot_of_the_fleet_file(tiny_model_dir, write_robots, write_plugin, default_robots_lines, capsys):
    write_plugin("gecko_robot", f"""
        from ember_core import RobotType, hookimpl

        @hookimpl
        def ember_robot_types():
            return [RobotType(id="gecko", name="Gecko", description="Wall climber.", capabilities=["wall climbing"],
                              limitations=["no payload"], environments=["facades"],
                              examples={list(GECKO.examples)!r})]
        """)
    robots = write_robots([*default_robots_lines, "  - plugin: gecko_robot"])
    assert main(["robots", "check", "gecko", "--robots", str(robots), "--model", str(tiny_model_dir), "--json",
                 "--device", "cpu"]) == 0
    [checked] = json.loads(capsys.readouterr().out)
    assert checked["robot_id"] == "gecko" and len(checked["examples"]) == 3 and checked["verdict"].startswith("gecko: ")
    assert main(["robots", "check", "gecko", "--robots", str(robots), "--model", str(tiny_model_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("  rank ") for line in lines) == 3 and lines[-1].startswith("gecko: ")
    assert main(["robots", "check", "helicopter", "--robots", str(robots), "--model", str(tiny_model_dir)]) == 2
    assert "ember: error: unknown robot 'helicopter'; this fleet has: drone" in capsys.readouterr().err
