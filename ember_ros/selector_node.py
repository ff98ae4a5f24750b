"""The Ember selector lifecycle node: camera and task topics in; selection, reasoning and plan out."""
from __future__ import annotations

import copy
import functools
import sys
import time
from dataclasses import replace
from typing import Any, Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from ember_msgs.msg import Selection as SelectionMessage
from ember_msgs.srv import SelectRobots
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from ember_core.availability import FleetStatus
from ember_core.selection import Selection
from ember_core.selector import Selector
from ember_ros import parameters
from ember_ros.camera import Frame, LatestFrame
from ember_ros.executor import SelectorExecutor
from ember_ros.fleet_status import read_fleet_status
from ember_ros.launch_defaults import NODE_NAME
from ember_ros.outputs import JSON_TOPICS, SELECTION, split_document
from ember_ros.requests import TaskQueue, TaskRequest, parse_task
from ember_ros.service import Reply, read_request
from ember_ros.stats import NodeStats, shorten
from ember_ros.typed import to_message
from ember_ros.worker import Conditions, SelectionWorker, selection_request

# Cameras publish best effort; keep only the newest frame so a slow model never reads a backlog.
IMAGE_QOS = QoSProfile(depth=1, history=qos_profile_sensor_data.history, reliability=ReliabilityPolicy.BEST_EFFORT,
                       durability=DurabilityPolicy.VOLATILE)
# Keep all tasks at the DDS level: a burst must reach the node's own bounded queue, which answers every
# task it drops with rejected_busy. A keep-last reader would lose the overflow without a word.
TASK_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
FLEET_STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
# Results: a fleet manager waits on every request_id, so an answer must stay in the writer's history until
# each reliable reader has it, also when a reader missed its first transmission in a burst and asks for
# a resend. Keep-last 10 lost answers of 1,000-task bursts (985-999 arrived; none, to a consumer frozen
# for the burst): the writer had replaced them before the resend was asked for. KEEP_ALL is no fix: one
# reader that stops acknowledging (a frozen process, a KEEP_ALL reader that never takes) made publish
# block for good after ~5,000 answers, freezing the worker and the executor with it. So keep-last, deep
# enough for a whole burst: a reader may fall RESULT_DEPTH answers behind and lose none, at a bounded cost
# (1,000 x 3 messages of a few kB), and publish never blocks. Latched results keep the same depth: a late
# subscriber is sent up to the last 1,000 and its own depth keeps the newest (depth 1: the last one).
RESULT_DEPTH = 1000
RESULT_QOS = QoSProfile(depth=RESULT_DEPTH, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
LATCHED_RESULT_QOS = QoSProfile(depth=RESULT_DEPTH, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)
WORKER_STOP_TIMEOUT_S = 60.0  # long enough for one selection with reasoning on a slow CPU
_PARAMETER_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                    float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


class SelectorNode(LifecycleNode):
    """A thin adapter over the Selector. Callbacks only store frames or queue tasks; one worker thread selects.

    It is the worker's host (ember_ros.worker.WorkerHost): the worker takes tasks from `queue`, reads
    `conditions()` and hands each result to `publish_result`.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        self._accept_whole_numbers_for_doubles()
        for spec in parameters.SPECS:
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        self.settings = parameters.settings(self._values())
        self.add_on_set_parameters_callback(self._validate)
        self.add_post_set_parameters_callback(self._apply)
        self.stats, self.camera, self.queue = NodeStats(), LatestFrame(), TaskQueue(self.settings.queue_size)
        self.fleet_status = FleetStatus()
        self.selector: Selector | None = None
        self.worker: SelectionWorker | None = None
        self.state = "unconfigured"
        self._outputs: dict[str, Any] = {}
        self._inputs: list[Any] = []
        self._service: Any = None
        # The service callback waits for the worker's answer; in a group of its own, on a second executor
        # thread, it never holds up the camera, the task topic or the lifecycle services.
        self._service_group = MutuallyExclusiveCallbackGroup()
        # Diagnostics go out in every state, so a failed configure is visible to the operator.
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._guarded("diagnostics", self.publish_diagnostics))

    # ---- lifecycle -------------------------------------------------------------------------

    def autostart(self) -> bool:
        """Configure, then activate; True when the node ended up active."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        values = self._values()
        try:
            self.selector = Selector(values["model_path"] or None, robots_file=values["robots_file"] or None,
                                     device=values["device"], scene_vetoes=values["scene_vetoes"],
                                     backend=values["backend"] or None)
        except Exception as err:  # noqa: BLE001 - any load failure is reported, and the node stays up
            self.stats.error(f"configure failed: {err}")
            self.get_logger().error(f"configure failed: {err}")
            return TransitionCallbackReturn.FAILURE
        qos = LATCHED_RESULT_QOS if values["latch_results"] else RESULT_QOS
        for kind, topic in ((SelectionMessage, SELECTION), *((String, topic) for topic in JSON_TOPICS)):
            events = PublisherEventCallbacks(incompatible_qos=lambda info, t=topic: self._qos_mismatch(t, info))
            self._outputs[topic] = self.create_lifecycle_publisher(kind, topic, copy.copy(qos), event_callbacks=events)
        fleet = self.selector.fleet
        self.get_logger().info(
            f"configured: model {self.selector.model_name} (sha {self.selector.model_sha[:12]}), fleet of "
            f"{len(fleet)} robots [{', '.join(fleet.ids)}], device {self.selector.device}")
        self.state = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            for kind, topic, callback, qos in (
                (Image, "image", lambda m: self._on_image(m, False), IMAGE_QOS),
                (CompressedImage, "image/compressed", lambda m: self._on_image(m, True), IMAGE_QOS),
                (String, "task", self._on_task, TASK_QOS),
                (String, "fleet_status", self._on_fleet_status, FLEET_STATUS_QOS),
            ):
                self._inputs.append(self._subscribe(kind, topic, self._guarded(topic, callback), qos))
            self._service = self.create_service(SelectRobots, "~/select_robots", self._on_select_robots,
                                                callback_group=self._service_group)
        except Exception as err:  # noqa: BLE001 - e.g. a misspelt qos_overrides value; stay inactive, say why
            self._stop_inputs()
            self.stats.error(f"activate failed: {err}")
            self.get_logger().error(f"activate failed: {err}")
            return TransitionCallbackReturn.FAILURE
        self.worker = SelectionWorker(self.selector, host=self)
        self.worker.start()
        self.state = "active"
        self.get_logger().info(f"active: listening on {', '.join(s.topic_name for s in self._inputs)}")
        return super().on_activate(state)  # enables the lifecycle publishers

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.state = "inactive"  # first: the watchdog must not take the worker's planned stop for a death
        self._stop_inputs()
        for request in self.queue.drain():  # answered, never silently lost
            self._answer(request, "error", "the selector was deactivated before this task ran; send it again")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        for publisher in self._outputs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._outputs, self.selector = {}, None
        self.fleet_status = FleetStatus()  # the next configure may load another fleet
        self.camera.clear()
        self.state = "unconfigured"
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Stop listening and stop the worker; also what Ctrl-C does, after rclpy itself has shut down."""
        self.state = "finalized"
        self._stop_inputs()

    def _stop_inputs(self) -> None:
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs = []
        if self._service is not None:
            self.destroy_service(self._service)
            self._service = None
        if self.worker is not None and not self.worker.stop(WORKER_STOP_TIMEOUT_S):
            self.get_logger().warning("the selection worker did not stop in time; its result may be lost")
        self.worker = None

    # ---- inputs ----------------------------------------------------------------------------

    def _subscribe(self, kind: type, topic: str, callback: Any, qos: QoSProfile) -> Any:
        events = SubscriptionEventCallbacks(incompatible_qos=lambda info: self._qos_mismatch(topic, info))
        # rclpy writes QoS overrides into the profile it is given: pass a copy, keep the defaults intact.
        return self.create_subscription(kind, topic, callback, copy.copy(qos), event_callbacks=events,
                                        qos_overriding_options=QoSOverridingOptions.with_default_policies())

    def _on_image(self, message: Image | CompressedImage, compressed: bool) -> None:
        self.camera.store(Frame.of(message, compressed, self._now()))

    def _on_task(self, message: String) -> None:
        self.stats.count("tasks_received")
        self._enqueue(replace(parse_task(message.data), stamp=self.get_clock().now().to_msg()))

    def _on_select_robots(self, request: SelectRobots.Request, response: SelectRobots.Response) -> SelectRobots.Response:
        """Queue the request like a task message and answer with its result: every request gets a selection
        (invalid_input for a malformed one, error when no answer comes within the queue's worst case)."""
        self.stats.count("service_requests")
        reply = Reply()
        task = read_request(request, self.get_clock().now().to_msg(), self._now(), reply)
        self._enqueue(task)
        timeout = self.settings.stall_timeout * (self.settings.queue_size + 1)
        response.selection = reply.wait(timeout)
        if response.selection is None:
            message = f"no answer within {timeout:g} s (stall_timeout x (queue_size + 1)); see /diagnostics"
            self.stats.error(f"request {task.request_id}: {message}")
            selection = self.selector.error(selection_request(task, self.settings, self.fleet_status), "error", message)
            response.selection = to_message(selection.to_document(), Header(stamp=task.stamp))
        return response

    def _enqueue(self, task: TaskRequest) -> None:
        for dropped in self.queue.put(task):
            self._answer(dropped, "rejected_busy", f"the task queue (queue_size {self.settings.queue_size}) was full "
                         "and this was its oldest task; send tasks more slowly or raise queue_size")

    def _on_fleet_status(self, message: String) -> None:
        try:
            status = read_fleet_status(message.data, self.selector.fleet)
        except ValueError as err:  # over a limit, not JSON, or not the expected shape
            self.stats.error(f"fleet_status ignored: {err}")
            self.get_logger().warning(f"fleet_status ignored, keeping the previous one: {shorten(str(err))}")
            return
        if status.ignored:
            self.get_logger().warning(shorten(f"fleet_status names robots not in the fleet: {', '.join(status.ignored)}"))
        self.fleet_status = status
        self.stats.count("fleet_status_received")

    def _guarded(self, name: str, callback: Callable[..., None]) -> Callable[..., None]:
        """`callback` for rclpy: an exception it raises is counted and logged, never let into the executor,
        whose spin() it would end (and with it the node: nothing else would be received or answered)."""
        @functools.wraps(callback)
        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except Exception as err:  # noqa: BLE001 - see the docstring
                self.stats.count("callback_exceptions")
                self.stats.error(f"{name} callback failed: {err!r}")
                self.get_logger().error(shorten(f"{name} callback failed, message dropped: {err!r}"))
        return guarded

    def _qos_mismatch(self, topic: str, info: Any) -> None:
        self.stats.count("qos_incompatible")
        self.stats.error(f"QoS incompatible with a peer on {topic}: policy {info.last_policy_kind.name}")
        self.get_logger().warning(f"QoS incompatible with a peer on '{topic}' (policy {info.last_policy_kind.name}); "
                                  "no messages flow between them. Cameras usually need best effort.")

    def conditions(self) -> Conditions:
        """What the worker answers its next task with: the settings, newest frame, clock and fleet status now."""
        return Conditions(self.settings, self.camera.latest(), self._now(), self.fleet_status)

    # ---- outputs ---------------------------------------------------------------------------

    def _answer(self, task: TaskRequest, status: str, message: str) -> None:
        """A task the worker will not run (dropped from the queue, or the node deactivated) still gets its answer.

        Called from callbacks and transitions, so a failure to publish is reported here, not raised.
        """
        try:
            request = selection_request(task, self.settings, self.fleet_status)
            self.publish_result(self.selector.error(request, status, message), task)
        except Exception as err:  # noqa: BLE001 - e.g. DDS refused the message; the node goes on
            self.stats.error(f"request {task.request_id}: its {status} answer could not be published: {err!r}")
            self.get_logger().error(shorten(f"request {task.request_id}: {status} answer not published: {err!r}"))

    def publish_result(self, selection: Selection, task: TaskRequest, inference_ms: float | None = None,
                       frame: Frame | None = None) -> None:
        """Send one result on the result topics (and to the service caller that asked) and count it: every
        status is counted here, and only here. The typed result carries the header of the image it was
        computed on, else the time the task was received."""
        document = selection.to_document()
        header = frame.message.header if frame is not None else Header(stamp=task.stamp or self.get_clock().now().to_msg())
        message = to_message(document, header)
        self._outputs[SELECTION].publish(message)
        for topic, text in split_document(document).items():
            self._outputs[topic].publish(String(data=text))
        if task.reply is not None:
            task.reply(message)
        self.stats.count("results_published")
        self.stats.count(selection.status)
        if selection.errors:
            self.stats.error(f"request {task.request_id}: {selection.status}: {'; '.join(selection.errors)}")
        if inference_ms is not None:
            self.stats.latency(inference_ms, (time.monotonic() - task.received) * 1000.0)
        chosen = ", ".join(f"{c.robot_type} {c.confidence:.2f}" for c in selection.candidates if c.selected)
        self.get_logger().info(shorten(f"request {task.request_id}: {selection.status}"
                                       + (f" -> {chosen}" if chosen else f" ({'; '.join(selection.errors)})")))

    def publish_diagnostics(self) -> None:
        values = self.stats.snapshot()
        frame = self.camera.latest()
        worker = self.worker
        busy = worker.busy() if worker is not None else None
        values.update(state=self.state, image_rate_hz=self.camera.rate_hz(), queue_depth=len(self.queue),
                      queue_size=self.settings.queue_size, queue_high_water=self.queue.high_water,
                      image_age_ms=(self._now() - frame.taken) * 1000.0 if frame else -1.0,
                      worker_alive=worker is not None and worker.is_alive(),
                      worker_request=shorten(busy[0], 100) if busy else "", worker_busy_s=busy[1] if busy else 0.0)
        if self.selector is not None:
            values.update(model=self.selector.model_name, model_sha=self.selector.model_sha,
                          fleet_size=len(self.selector.fleet), fleet_hash=self.selector.fleet.hash)
        level, summary = self._health(values)
        status = DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: robot selection",
                                  message=summary, hardware_id="ember",
                                  values=[KeyValue(key=k, value=_text(v)) for k, v in sorted(values.items())])
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics.publish(DiagnosticArray(header=header, status=[status]))

    def _health(self, values: dict[str, Any]) -> tuple[bytes, str]:
        if self.state != "active":
            failed = values["last_error"].startswith(("configure failed", "activate failed"))
            return (DiagnosticStatus.ERROR if failed else DiagnosticStatus.WARN), f"{self.state}; {values['last_error']}"
        # The watchdog: the worker answers every task, so a dead or stuck worker is an outage, not a warning.
        if not values["worker_alive"]:
            return DiagnosticStatus.ERROR, ("active, but the selection worker thread is dead: tasks are queued and never "
                                            f"answered; deactivate and activate the node (last error: {values['last_error']})")
        if values["worker_busy_s"] > self.settings.stall_timeout:
            return DiagnosticStatus.ERROR, (f"active, but the worker is stalled: on request {values['worker_request']} "
                                            f"for {values['worker_busy_s']:.1f} s, over stall_timeout "
                                            f"{self.settings.stall_timeout:g} s")
        if self.settings.require_image and values["image_rate_hz"] == 0.0:
            return DiagnosticStatus.WARN, "active; no camera images in the last 2 s"
        return DiagnosticStatus.OK, "active"

    # ---- parameters ------------------------------------------------------------------------

    def _accept_whole_numbers_for_doubles(self) -> None:
        """`max_image_age: 2` in a params file means 2.0; rclpy would refuse it as an integer and stop."""
        overrides = self._parameter_overrides  # rclpy keeps the params file and -p values here until declared
        for spec in parameters.SPECS:
            given = overrides.get(spec.name)
            if isinstance(spec.default, float) and given is not None and given.type_ == Parameter.Type.INTEGER:
                overrides[spec.name] = Parameter(spec.name, value=float(given.value))

    def _values(self) -> dict[str, Any]:
        return {spec.name: self.get_parameter(spec.name).value for spec in parameters.SPECS}

    def _validate(self, updates: list[Parameter]) -> SetParametersResult:
        found = parameters.problems({p.name: p.value for p in updates if p.name in parameters.SPEC_BY_NAME})
        return SetParametersResult(successful=not found, reason="; ".join(found))

    def _apply(self, updates: list[Parameter]) -> None:
        self.settings = parameters.settings(self._values())
        for dropped in self.queue.resize(self.settings.queue_size):
            self._answer(dropped, "rejected_busy", f"queue_size was lowered to {self.settings.queue_size}")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds / 1e9


def _descriptor(spec: parameters.Spec) -> ParameterDescriptor:
    """The spec as rclpy declares it: type, description, read-only flag and range, for `ros2 param describe`."""
    kind = _PARAMETER_TYPES[type(spec.default)]
    descriptor = ParameterDescriptor(name=spec.name, type=kind, description=spec.description, read_only=spec.read_only)
    if kind == ParameterType.PARAMETER_INTEGER:
        descriptor.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    elif kind == ParameterType.PARAMETER_DOUBLE:
        descriptor.floating_point_range = [FloatingPointRange(from_value=spec.low, to_value=spec.high, step=0.0)]
    return descriptor


def _text(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def usage() -> str:
    """What `selector --help` prints: how to start the node, its parameters with defaults, and its interfaces."""
    width = max(len(spec.name) for spec in parameters.SPECS)
    rows = [f"  {spec.name:<{width}}  {spec.default!r:<8} {spec.description}"
            + (" (read at configure)" if spec.read_only else "") for spec in parameters.SPECS]
    return "\n".join((
        "usage: ros2 run ember_ros selector [--ros-args -p NAME:=VALUE ... --params-file FILE -r FROM:=TO]",
        "",
        "Ember's robot selector, a lifecycle node: camera image and task in, ranked robots, reasoning and plan out.",
        "",
        "parameters (name, default, meaning):",
        *rows,
        "",
        "subscribes: image (sensor_msgs/Image), image/compressed (sensor_msgs/CompressedImage),",
        "            task (std_msgs/String), fleet_status (std_msgs/String)",
        f"publishes:  {SELECTION} (ember_msgs/Selection), {', '.join(JSON_TOPICS)} (std_msgs/String, JSON),",
        "            /diagnostics (diagnostic_msgs/DiagnosticArray)",
        "serves:     ~/select_robots (ember_msgs/srv/SelectRobots)",
    ))


def main(args: list[str] | None = None) -> None:
    """`ros2 run ember_ros selector [--ros-args ...]`: the node, brought to active when autostart is true."""
    if {"-h", "--help"} & set(rclpy.utilities.remove_ros_args(args if args is not None else sys.argv)[1:]):
        print(usage())
        return
    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    try:
        node = SelectorNode()
        if node.get_parameter("autostart").value:
            node.autostart()
        executor = SelectorExecutor(num_threads=2)  # one for the select service's wait, one for the rest
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
