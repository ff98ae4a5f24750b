"""The selection document as a terminal shows it: a ranked table, the reasoning, the team and its plan."""
from __future__ import annotations


def render_selection(document: dict) -> str:
    """The selection document as a ranked table, reasoning and plan for a terminal."""
    lines = [f"Task: {document['task']}", f"Model: {document['model']['name']} ({document['model']['sha']}), "
             f"fleet of {len(document['fleet']['robots'])} ({document['fleet']['hash'][:12]})"]
    image = document["image"]
    if image is not None:
        age = "unknown" if image["age_ms"] is None else f"{image['age_ms']:.0f} ms"
        lines.append(f"Image: frame '{image['frame_id']}', age {age}, scene {', '.join(image.get('scene', [])) or 'not recognised'}")
    if document["status"] != "ok":
        return "\n".join(lines + [f"Status: {document['status']}: {'; '.join(document['errors'])}"])
    lines.append(f"{'rank':<5} {'robot':<20} {'confidence':>10}  selected")
    for c in document["candidates"]:
        note = f"  (infeasible: {'; '.join(c['infeasible'])})" if c["infeasible"] else ""
        note += f"  ({c['availability']})" if c["availability"] in ("busy", "offline") else ""
        lines.append(f"{c['rank']:<5} {c['robot_type']:<20} {c['confidence']:>10.3f}  {'yes' if c['selected'] else 'no'}{note}")
    reasoning = document["reasoning"]
    if reasoning is not None:
        state = "valid" if reasoning["reasoning_valid"] else "INVALID: " + "; ".join(reasoning["problems"])
        lines += [f"Reasoning ({state}):"] + [f"  {step}" for step in reasoning["steps"]]
    plan = document["plan"]
    if document["team"]:
        names = {s["robot_id"]: s["robot_type"] for s in plan["subtasks"]}
        lines.append("Team: " + ", then ".join(names.get(robot_id, robot_id) for robot_id in document["team"]))
    if plan is not None:
        lines.append("Plan:" if plan["subtasks"] else "Plan: none (no team needed: a selected robot can do the whole job)")
        lines += [f"  {s['order']}. {s['robot_type']}: {s['description']}" for s in plan["subtasks"]]
        if plan["problems"]:
            lines.append(f"  plan problems: {'; '.join(plan['problems'])}")
    lines.append("Latency (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in document["latency_ms"].items()))
    return "\n".join(_clip(line) for line in lines)


def _clip(text: str, limit: int = 240) -> str:
    """A terminal line of at most `limit` characters (runaway generated text); `--json` keeps it all."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
