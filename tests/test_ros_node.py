"""The selector node with real rclpy on an isolated domain: topics, QoS, pairing, load, lifecycle, parameters."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install '.[ros]')")
from rosutil import (  # noqa: E402
    connected, diagnostic_values, hold_frame, make_node, make_probe, node_factory, ros, send_frame, spinning, wait_for)

from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from ember_core.selection import validate_document  # noqa: E402

TASK = "Inspect the intake pipe of a flooded pump station for blockages"


def test_image_and_task_give_valid_joined_results_on_all_three_topics(make_node, make_probe):
    node, probe = make_node(), make_probe()
    with spinning(node, probe):
        connected(probe, node)
        send_frame(probe, node)
        probe.send_task({"task": TASK, "request_id": "r-1", "task_id": "T-1", "top_k": 2})
        selection, reasoning, plan = wait_for(lambda: probe.all_parts("r-1"), "all three results of r-1")
    validate_document(selection)
    assert selection["status"] == "ok" and len(selection["candidates"]) == 2 and selection["task_id"] == "T-1"
    assert selection["image"]["frame_id"] == "camera" and 0 <= selection["image"]["age_ms"] < 2000
    for part in (reasoning, plan):
        assert {k: part[k] for k in ("request_id", "task_id", "image", "stamp")} == \
               {k: selection[k] for k in ("request_id", "task_id", "image", "stamp")}
    assert reasoning["reasoning"] == selection["reasoning"] and plan["plan"] == selection["plan"]
    assert reasoning["schema"] == "ember.reasoning/1" and plan["schema"] == "ember.plan/1"


def test_plain_text_task_gets_a_generated_request_id(make_node, make_probe):
    node, probe = make_node(require_image=False, return_reasoning=False), make_probe()
    with spinning(node, probe):
        connected(probe, node)
        probe.send_task(TASK)
        document = wait_for(lambda: probe.outputs["robot_selection/json"], "a result")[0]
    assert document["status"] == "ok" and len(document["request_id"]) == 32 and document["image"] is None


def test_missing_and_stale_images_are_refused_or_text_only(make_node, make_probe):
    node, probe = make_node(max_image_age=1.0, return_reasoning=False), make_probe()
    with spinning(node, probe):
        connected(probe, node)
        probe.send_task({"task": TASK, "request_id": "none"})
        assert wait_for(lambda: probe.result("none"), "no_image")["status"] == "no_image"
        send_frame(probe, node, age=5.0)
        probe.send_task({"task": TASK, "request_id": "stale"})
        stale = wait_for(lambda: probe.result("stale"), "stale_image")
        node.set_parameters([Parameter("require_image", value=False)])
        probe.send_task({"task": TASK, "request_id": "text-only"})
        text_only = wait_for(lambda: probe.result("text-only"), "text-only result")
    validate_document(stale)
    assert stale["status"] == "stale_image" and stale["image"]["age_ms"] > 4000 and "max_image_age" in stale["errors"][0]
    assert text_only["status"] == "ok" and text_only["image"] is None


def test_bad_inputs_are_invalid_input_and_the_node_answers_the_next_task(make_node, make_probe):
    node, probe = make_node(return_reasoning=False), make_probe()
    bad = Image(height=4, width=4, encoding="yuv422", step=8, data=bytes(32))
    corrupt = CompressedImage(format="jpeg", data=b"\xff\xd8 not a jpeg")
    with spinning(node, probe):
        connected(probe, node)
        probe.send_task("   ")
        probe.send_task('{"task": "Inspect", "request_id": ')
        probe.send_task({"task": "", "request_id": "empty-json"})
        probe.send_task({"task": TASK, "request_id": "k", "top_k": 0})
        for request_id, message, publisher in (("enc", bad, probe.camera), ("corrupt", corrupt, probe.compressed)):
            hold_frame(publisher, node, message)
            probe.send_task({"task": TASK, "request_id": request_id})
            wait_for(lambda: probe.result(request_id), f"result of {request_id}")
        send_frame(probe, node)
        probe.send_task({"task": TASK, "request_id": "good"})
        good = wait_for(lambda: probe.result("good"), "the good task's result")
    results = probe.outputs["robot_selection/json"]
    invalid = [r for r in results if r["request_id"] != "good"]
    assert len(invalid) == 6 and {r["status"] for r in invalid} == {"invalid_input"}
    errors = " | ".join(r["errors"][0] for r in invalid)
    for expected in ("task is empty", "does not parse", "non-empty \"task\"", "top_k must be", "yuv422", "camera image"):
        assert expected in errors
    for document in results:
        validate_document(document)
    assert good["status"] == "ok"


def test_burst_of_100_tasks_each_answered_queue_bounded_memory_flat(make_node, make_probe):
    node, probe = make_node(require_image=False, return_reasoning=False, queue_size=4), make_probe()
    with spinning(node, probe):
        connected(probe, node)
        rss = []
        for burst in range(2):
            ids = [f"b{burst}-{i}" for i in range(100)]
            for request_id in ids:
                probe.send_task({"task": TASK, "request_id": request_id})
            wait_for(lambda: all(probe.result(i) for i in ids), f"answers to burst {burst}", timeout=120)
            rss.append(_rss_mb())
    statuses = [probe.result(f"b{b}-{i}")["status"] for b in range(2) for i in range(100)]
    assert set(statuses) == {"ok", "rejected_busy"} and statuses.count("rejected_busy") > 0
    assert len(probe.outputs["robot_selection/json"]) == 200  # exactly one answer per task
    assert node.queue.high_water <= 4
    assert rss[1] - rss[0] < 30, f"memory grew from {rss[0]:.0f} MB to {rss[1]:.0f} MB over the second burst"
    busy = next(r for r in probe.outputs["robot_selection/json"] if r["status"] == "rejected_busy")
    validate_document(busy)
    assert "queue_size 4" in busy["errors"][0]


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        import os
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_fleet_status_moves_a_busy_robot_down_with_the_reason(make_node, make_probe):
    node, probe = make_node(require_image=False, return_reasoning=False), make_probe()
    with spinning(node, probe):
        connected(probe, node)
        probe.send_task({"task": TASK, "request_id": "free", "top_k": 5})
        first = wait_for(lambda: probe.result("free"), "first result")["candidates"][0]["robot_id"]
        wait_for(lambda: probe.status.get_subscription_count(), "fleet_status subscription")
        probe.status.publish(rclpy_string(json.dumps({"busy": [first]})))
        wait_for(lambda: node.fleet_status.of(first) == "busy", "the node to take the fleet status")
        probe.send_task({"task": TASK, "request_id": "busy", "top_k": 5})
        busy = wait_for(lambda: probe.result("busy"), "result with the robot busy")
        probe.status.publish(rclpy_string("{not json"))
        wait_for(lambda: "fleet_status ignored" in node.stats.last_error, "the bad fleet status to be reported")
    moved = next(c for c in busy["candidates"] if c["robot_id"] == first)
    assert moved["availability"] == "busy" and not moved["selected"] and moved["rank"] == 5
    assert busy["candidates"][0]["selected"] and node.fleet_status.of(first) == "busy"  # the bad one changed nothing


def rclpy_string(text: str):
    from std_msgs.msg import String
    return String(data=text)


def test_qos_mismatches_are_logged_and_counted(make_node, make_probe):
    """A reliable-only camera subscription cannot hear a best-effort camera; a latched consumer cannot
    hear volatile results. Both are counted and show in diagnostics."""
    node = make_node(**{"qos_overrides./image.subscription.reliability": "reliable"})
    probe = make_probe(output_qos=QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                        durability=DurabilityPolicy.TRANSIENT_LOCAL))
    with spinning(node, probe):
        wait_for(lambda: node.stats.counts["qos_incompatible"] >= 4, "image and 3 output QoS mismatches")
        wait_for(lambda: any(diagnostic_values(d).get("qos_incompatible", "0") != "0" for d in probe.diagnostics), "diagnostics")
    assert "RELIABILITY" in node.stats.last_error or "DURABILITY" in node.stats.last_error


def test_latched_results_reach_a_late_subscriber(make_node, make_probe):
    node = make_node(require_image=False, return_reasoning=False, latch_results=True)
    sender = make_probe()
    with spinning(node, sender):
        connected(sender, node)
        sender.send_task({"task": TASK, "request_id": "early"})
        wait_for(lambda: sender.result("early"), "the result")
    late = make_probe(output_qos=QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                       durability=DurabilityPolicy.TRANSIENT_LOCAL))
    with spinning(node, late):
        assert wait_for(lambda: late.result("early"), "the latched result")["status"] == "ok"


def test_diagnostics_report_rates_queue_latency_model_and_fleet(make_node, make_probe):
    node, probe = make_node(return_reasoning=False), make_probe()
    with spinning(node, probe):
        connected(probe, node)
        send_frame(probe, node)
        probe.send_task({"task": TASK, "request_id": "d"})
        wait_for(lambda: probe.result("d"), "a result")
        values = wait_for(lambda: next((diagnostic_values(d) for d in reversed(probe.diagnostics)
                                        if diagnostic_values(d).get("ok") == "1"), None),
                          "diagnostics after the result", timeout=5)
    for key in ("image_rate_hz", "image_age_ms", "queue_depth", "rejected_busy", "inference_ms_mean", "inference_ms_p95",
                "model", "model_sha", "fleet_size", "last_error", "qos_incompatible", "state", "worker_alive",
                "worker_busy_s", "worker_exceptions", "callback_exceptions"):
        assert key in values, key
    assert values["fleet_size"] == "5" and values["state"] == "active" and float(values["inference_ms_p95"]) > 0
    assert values["worker_alive"] == "True" and values["worker_exceptions"] == "0"
    assert values["rejected_busy"] == "0" and values["tasks_received"] == "1" and float(values["image_rate_hz"]) >= 0


def test_lifecycle_through_the_standard_services(make_node, make_probe):
    node, probe = make_node(autostart=False), make_probe()
    change = probe.create_client(ChangeState, "/ember_selector/change_state")
    get = probe.create_client(GetState, "/ember_selector/get_state")

    def call(client, request):
        future = client.call_async(request)
        return wait_for(lambda: future.done() and future.result(), "a lifecycle service reply")

    def transition(transition_id: int) -> bool:
        return call(change, ChangeState.Request(transition=Transition(id=transition_id))).success

    def state() -> str:
        return call(get, GetState.Request()).current_state.label

    with spinning(node, probe):
        wait_for(lambda: change.service_is_ready() and get.service_is_ready(), "lifecycle services")
        assert state() == "unconfigured" and node.selector is None
        assert transition(Transition.TRANSITION_CONFIGURE) and state() == "inactive" and node.selector is not None
        assert transition(Transition.TRANSITION_ACTIVATE) and state() == "active" and node.worker.is_alive()
        assert node.count_publishers("/robot_selection") == 1 and node.count_subscribers("/task") == 1
        worker = node.worker
        assert transition(Transition.TRANSITION_DEACTIVATE) and state() == "inactive"
        assert not worker.is_alive() and node.count_subscribers("/task") == 0
        assert transition(Transition.TRANSITION_CLEANUP) and state() == "unconfigured" and node.selector is None


def test_configure_failure_is_reported_and_the_node_stays_up(make_node, make_probe, tmp_path):
    node, probe = make_node(autostart=False, model_path=str(tmp_path / "missing")), make_probe()
    assert not node.autostart() and node.state == "unconfigured"
    with spinning(node, probe):
        array = wait_for(lambda: probe.diagnostics and probe.diagnostics[-1], "diagnostics", timeout=5)
    status = array.status[0]
    assert status.level == status.ERROR and "configure failed" in status.message and "missing" in status.message


def test_parameters_validate_before_applying(make_node):
    node = make_node(require_image=False)
    assert node.set_parameters([Parameter("top_k", value=1)])[0].successful and node.settings.top_k == 1
    for name, value in (("top_k", 0), ("confidence_threshold", 1.5), ("max_image_age", -1.0), ("top_k", "three"),
                        ("model_path", "/elsewhere"), ("queue_size", 5000)):
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and result.reason, (name, value)
    assert node.settings.top_k == 1 and node.get_parameter("model_path").value != "/elsewhere"
    descriptor = node.describe_parameter("confidence_threshold")
    assert descriptor.floating_point_range[0].to_value == 1.0 and descriptor.description
    assert node.describe_parameter("model_path").read_only


def test_a_bad_qos_override_fails_activation_with_the_reason(make_node):
    node = make_node(autostart=False, **{"qos_overrides./task.subscription.reliability": "reliabel"})
    assert not node.autostart() and node.state == "inactive" and node.worker is None
    assert node.stats.last_error.startswith("activate failed") and "reliabel" in node.stats.last_error


def test_threshold_and_top_k_parameters_reach_each_task_and_leave_the_selector_alone(make_node, make_probe):
    """The same selector answers the same task under two parameter sets; only the requests differ."""
    node, probe = make_node(require_image=False, return_reasoning=False), make_probe()
    selector = node.selector
    scalars = {name: value for name, value in vars(selector).items() if isinstance(value, (bool, int, float, str))}
    results = {}
    with spinning(node, probe):
        connected(probe, node)
        for threshold, top_k in ((0.0, 5), (1.0, 2)):
            updates = [Parameter("confidence_threshold", value=threshold), Parameter("top_k", value=top_k)]
            assert all(result.successful for result in node.set_parameters(updates))
            probe.send_task({"task": TASK, "request_id": f"at-{threshold}"})
            results[threshold] = wait_for(lambda: probe.result(f"at-{threshold}"), f"the result at threshold {threshold}")
    low, high = results[0.0]["candidates"], results[1.0]["candidates"]
    assert (len(low), len(high)) == (5, 2)
    assert [c["robot_id"] for c in high] == [c["robot_id"] for c in low[:2]]  # one ranking, cut at each top_k
    feasible = [c["robot_id"] for c in low if not c["infeasible"]]
    assert len(feasible) >= 2  # else both thresholds would select the same single robot
    assert [c["robot_id"] for c in low if c["selected"]] == feasible  # threshold 0: every feasible robot
    assert [c["robot_id"] for c in high if c["selected"]] == [high[0]["robot_id"]]  # threshold 1: the best one only
    assert node.selector is selector and not [name for name in vars(selector) if "threshold" in name]
    assert {name: value for name, value in vars(selector).items() if isinstance(value, (bool, int, float, str))} == scalars


def test_whole_numbers_are_accepted_for_double_parameters(make_node):
    node = make_node(autostart=False, max_image_age=3, confidence_threshold=1)
    assert node.settings.max_image_age == 3.0 and node.get_parameter("confidence_threshold").value == 1.0


def test_deactivation_answers_the_tasks_still_queued(make_node, make_probe):
    from ember_ros.requests import TaskRequest

    node, probe = make_node(require_image=False, return_reasoning=False, queue_size=100), make_probe()
    with spinning(node, probe):
        connected(probe, node)
        for i in range(50):
            node.queue.put(TaskRequest(f"q-{i}", TASK))
        node.trigger_deactivate()
        answers = wait_for(lambda: len(probe.outputs["robot_selection/json"]) == 50 and probe.outputs["robot_selection/json"],
                           "one answer per queued task")
    statuses = {a["request_id"]: a["status"] for a in answers}
    assert len(statuses) == 50 and set(statuses.values()) <= {"ok", "error"} and "error" in statuses.values()
    refused = next(a for a in answers if a["status"] == "error")
    assert "deactivated before this task ran" in refused["errors"][0]


def test_a_failing_model_gives_an_error_result_and_the_next_task_is_answered(make_node, make_probe, monkeypatch):
    node, probe = make_node(require_image=False, return_reasoning=False), make_probe()

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    with spinning(node, probe):
        connected(probe, node)
        monkeypatch.setattr(node.selector, "select", out_of_memory)
        probe.send_task({"task": TASK, "request_id": "fails"})
        failed = wait_for(lambda: probe.result("fails"), "the error result")
        monkeypatch.undo()
        probe.send_task({"task": TASK, "request_id": "after"})
        after = wait_for(lambda: probe.result("after"), "the next result")
    validate_document(failed)
    assert failed["status"] == "error" and "CUDA out of memory" in failed["errors"][0] and after["status"] == "ok"
    assert "CUDA out of memory" in node.stats.last_error and node.worker is not None and node.worker.is_alive()


def test_the_backend_parameter_runs_an_onnx_export(tiny_onnx_dir, make_probe):
    with node_factory(tiny_onnx_dir) as make:
        node, probe = make(backend="onnx", require_image=False, return_reasoning=False), make_probe()
        with spinning(node, probe):
            connected(probe, node)
            probe.send_task({"task": TASK, "request_id": "onnx"})
            document = wait_for(lambda: probe.result("onnx"), "a result")
    validate_document(document)
    assert document["status"] == "ok" and document["model"]["name"].endswith("(onnx)")
