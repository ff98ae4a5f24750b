"""Load on `ember serve` over loopback: requests/s and latency at 1, 4 and 16 concurrent clients, and the server's memory.

    python benchmarks/server_load.py [--requests 20] [--soak 2000] [--image] [--reasoning] [--model DIR] [--out FILE]

Starts the installed `ember` executable (`ember serve`, the shipped model unless --model) on
127.0.0.1 and a free port, waits for GET /ready, then for each client count sends --requests
POST /select requests per client (JSON; the demo tasks in turn; with --image a 640x480 JPEG,
base64-encoded) and times each from send to answer. Then it reads the server process's resident
memory (RSS), sends --soak more requests from 4 clients and reads it again. Prints a table, writes
the figures as JSON to --out.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

import httpx
import numpy as np

from ember_core.scenes import render_scene
from ember_ros.demo_camera import DEMO_TASKS

CLIENTS = (1, 4, 16)
SOAK_CLIENTS = 4
READY_TIMEOUT_S = 300


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per client at each client count (default %(default)s)")
    parser.add_argument("--soak", type=int, default=2000, help="requests between the two memory readings (default %(default)s)")
    parser.add_argument("--image", action="store_true", help="send a 640x480 JPEG with each task")
    parser.add_argument("--reasoning", action="store_true", help="ask for the reasoning (slower)")
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--out", default="outputs/server_load.json", help="JSON file of the figures (default %(default)s)")
    args = parser.parse_args()

    bodies = _bodies(args.image, args.reasoning)
    port = _free_port()
    command = [str(Path(sys.executable).with_name("ember")), "serve", "--port", str(port), "--device", "cpu"]
    command += ["--model", args.model] if args.model else []
    log = tempfile.TemporaryFile()  # a pipe nobody reads would fill up and stall the server
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_ready(base_url, server, log)
        rows = [_load(base_url, bodies, clients, args.requests) for clients in CLIENTS]
        rss_before = _rss_mib(server.pid)
        soak = _load(base_url, bodies, SOAK_CLIENTS, -(-args.soak // SOAK_CLIENTS))
        rss_after = _rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    result = {"command": " ".join(sys.argv), "image": args.image, "reasoning": args.reasoning, "model": args.model,
              "cpus": os.cpu_count(), "rows": rows, "soak": soak, "rss_mib_before": rss_before, "rss_mib_after": rss_after}
    _print(result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def _bodies(image: bool, reasoning: bool) -> list[bytes]:
    """One JSON request body per demo task."""
    bodies = []
    for task, scene in DEMO_TASKS:
        body = {"task": task, "return_reasoning": reasoning}
        if image:
            jpeg = io.BytesIO()
            render_scene(scene, 224).resize((640, 480)).save(jpeg, format="JPEG", quality=90)
            body["image"] = base64.b64encode(jpeg.getvalue()).decode("ascii")
        bodies.append(json.dumps(body).encode("utf-8"))
    return bodies


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_ready(base_url: str, server: subprocess.Popen, log: IO[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(base_url=base_url, timeout=5) as http:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                log.seek(0)
                raise SystemExit(f"ember serve exited with {server.returncode}:\n{log.read().decode(errors='replace')}")
            try:
                if http.get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise SystemExit(f"ember serve was not ready within {READY_TIMEOUT_S} s")


def _load(base_url: str, bodies: list[bytes], clients: int, requests: int) -> dict:
    """`clients` threads, each sending `requests` requests one after another; latencies and the wall time."""
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()

    def client(offset: int) -> None:
        with httpx.Client(base_url=base_url, timeout=120, headers={"content-type": "application/json"}) as http:
            for i in range(requests):
                began = time.perf_counter()
                answer = http.post("/select", content=bodies[(offset + i) % len(bodies)])
                elapsed = (time.perf_counter() - began) * 1000
                with lock:
                    latencies.append(elapsed)
                    if answer.status_code != 200:
                        failures.append(answer.status_code)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    return {"clients": clients, "requests": len(latencies), "failures": len(failures),
            "requests_per_s": len(latencies) / wall, "p50_ms": float(np.percentile(latencies, 50)),
            "p95_ms": float(np.percentile(latencies, 95))}


def _rss_mib(pid: int) -> float:
    """Resident memory of process `pid` (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")


def _print(result: dict) -> None:
    print("| clients | requests | failures | requests/s | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|")
    for row in result["rows"]:
        print(f"| {row['clients']} | {row['requests']} | {row['failures']} | {row['requests_per_s']:.1f} | "
              f"{row['p50_ms']:.1f} | {row['p95_ms']:.1f} |")
    soak = result["soak"]
    print(f"\nRSS {result['rss_mib_before']:.0f} MiB before and {result['rss_mib_after']:.0f} MiB after "
          f"{soak['requests']} more requests ({SOAK_CLIENTS} clients, {soak['failures']} failures, "
          f"{soak['requests_per_s']:.1f} requests/s)")


if __name__ == "__main__":
    sys.exit(main())
