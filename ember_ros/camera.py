"""The newest camera frame, kept undecoded, and how a task is paired with it."""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from ember_core.selection import ImageInfo


@dataclass(frozen=True)
class Frame:
    """A received image message; decoding waits until a task needs it, so a 30 Hz camera costs little."""

    message: Any  # sensor_msgs/Image or sensor_msgs/CompressedImage
    compressed: bool
    stamp: float | None  # header stamp in seconds; None when the camera left it zero
    frame_id: str
    received: float  # node-clock seconds at arrival

    @property
    def taken(self) -> float:
        return self.stamp if self.stamp is not None else self.received

    @classmethod
    def of(cls, message: Any, compressed: bool, now: float) -> Frame:
        """The frame of an image message received at node-clock time `now`."""
        stamp = message.header.stamp
        seconds = stamp.sec + stamp.nanosec * 1e-9 if (stamp.sec or stamp.nanosec) else None
        return cls(message, compressed, seconds, message.header.frame_id, now)

    def age(self, now: float) -> float:
        """Seconds since the frame was taken; a stamp slightly ahead of our clock is not an old image."""
        return max(now - self.taken, 0.0)

    def info(self, now: float) -> ImageInfo:
        """What a result reports of this frame, `now` being when the task ran."""
        return ImageInfo(stamp=self.stamp, frame_id=self.frame_id, age_ms=self.age(now) * 1000.0)


class LatestFrame:
    """Holds only the newest frame (a new one replaces it: no backlog) and recent arrival times for the rate."""

    def __init__(self, window: int = 60):
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._arrivals: deque[float] = deque(maxlen=window)

    def store(self, frame: Frame) -> None:
        with self._lock:
            self._frame = frame
            self._arrivals.append(time.monotonic())

    def latest(self) -> Frame | None:
        with self._lock:
            return self._frame

    def rate_hz(self) -> float:
        """Frames per second over the recent window; 0 when frames stopped more than 2 s ago."""
        with self._lock:
            arrivals = list(self._arrivals)
        if len(arrivals) < 2 or time.monotonic() - arrivals[-1] > 2.0:
            return 0.0
        return (len(arrivals) - 1) / max(arrivals[-1] - arrivals[0], 1e-9)

    def clear(self) -> None:
        with self._lock:
            self._frame = None
            self._arrivals.clear()


@dataclass(frozen=True)
class Pairing:
    """What a task gets: a frame to use (or None: text only), the image info to report, or a refusal."""

    frame: Frame | None
    info: ImageInfo | None
    status: str = "ok"  # or no_image / stale_image
    error: str = ""


def pair(frame: Frame | None, now: float, max_image_age: float, require_image: bool) -> Pairing:
    """The newest frame if it is at most `max_image_age` seconds old; else a refusal or text only."""
    if frame is None:
        if require_image:
            return Pairing(None, None, "no_image", "no camera image received yet; check the image topic "
                           "(remaps, QoS) or set require_image:=false for text-only selection")
        return Pairing(None, None)
    info, age = frame.info(now), frame.age(now)
    if age <= max_image_age:
        return Pairing(frame, info)
    if require_image:
        return Pairing(None, info, "stale_image", f"newest image is {age:.2f} s old, over max_image_age "
                       f"{max_image_age:g} s; check the camera or raise max_image_age")
    return Pairing(None, None)
