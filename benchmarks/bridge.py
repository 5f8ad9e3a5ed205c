"""Measures the LiteLLM -> trio bridge (asyncfc_cli/model.py).

    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/bridge.py

1. Per-chunk cost: the same long stream from the simulated server read by
   plain ``litellm.acompletion`` under ``asyncio.run`` and through
   ``LiteLLMClient`` under trio; the difference is what the bridge adds.
2. Cancellation of a stalled stream: a trio cancel scope fires while the
   server is silent; how long until the stream returns, and until the client
   socket is no longer ESTABLISHED (read from /proc/net/tcp).
3. Per request: 40 short requests in a row on one client (one asyncio
   thread, as a run has), wall time per request and the TCP connections the
   server accepted for them (1 when connections are reused).
4. Threads left behind after the run.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import trio  # noqa: E402

from asyncfc_cli.model import AsyncioThread, LiteLLMClient, ModelConfig, import_litellm  # noqa: E402
from asyncfc_cli.sim.plan import SimPlan  # noqa: E402
from asyncfc_cli.sim.server import SimServer  # noqa: E402

MESSAGES = [{"role": "user", "content": "go"}]
TOKENS = 1500


def fast_plan() -> SimPlan:
    return SimPlan.model_validate({"decode_tps": 1e6, "ttft": 0, "steps": [],
                                   "final": {"answer": "".join(f"w{i:04d}" for i in range(TOKENS))[: 4 * TOKENS]}})


def raw_litellm(base_url: str) -> tuple[float, int]:
    litellm = import_litellm()

    async def go() -> tuple[float, int]:
        start = time.perf_counter()
        n = 0
        resp = await litellm.acompletion(model="openai/sim", api_base=base_url, api_key="k",
                                         messages=MESSAGES, stream=True)
        async for _ in resp:
            n += 1
        return time.perf_counter() - start, n

    return asyncio.run(go())


def bridged(base_url: str) -> tuple[float, int]:
    async def go() -> tuple[float, int]:
        with AsyncioThread() as loop_thread:
            client = LiteLLMClient(ModelConfig("openai/sim", base_url, "k", retries=0), loop_thread)
            start = time.perf_counter()
            n = 0
            async for _ in client.stream(MESSAGES, []):
                n += 1
            return time.perf_counter() - start, n

    return trio.run(go)


def established_to(port: int) -> int:
    count = 0
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == port and fields[3] == "01":
            count += 1
    return count


def cancel_stalled() -> tuple[float, float]:
    plan = SimPlan.model_validate({"decode_tps": 0.05, "ttft": 0, "steps": [], "final": {"answer": "slow answer"}})
    with SimServer(plan) as server:

        async def go() -> tuple[float, float]:
            with AsyncioThread() as loop_thread:
                client = LiteLLMClient(ModelConfig("openai/sim", server.base_url, "k", retries=0), loop_thread)
                with trio.move_on_after(1.0):
                    async for _ in client.stream(MESSAGES, []):
                        pass
                cancelled_at = time.perf_counter()
                # The scope has already exited when we get here; measure the socket.
                returned = 0.0
                while established_to(server.port) and time.perf_counter() - cancelled_at < 5:
                    await trio.sleep(0.001)
                closed = time.perf_counter() - cancelled_at
                return returned, closed

        return trio.run(go)


def per_request(n: int = 40) -> tuple[float, int]:
    """Seconds per short request, and connections the server accepted, for ``n`` requests in a row."""
    plan = SimPlan.model_validate({"decode_tps": 1e6, "ttft": 0, "steps": [], "final": {"answer": "ok"}})
    with SimServer(plan) as server:

        async def go() -> float:
            with AsyncioThread() as loop_thread:
                client = LiteLLMClient(ModelConfig("openai/sim", server.base_url, "k", retries=0), loop_thread)
                async for _ in client.stream(MESSAGES, []):  # the first request pays LiteLLM's setup
                    pass
                start = time.perf_counter()
                for _ in range(n):
                    async for _ in client.stream(MESSAGES, []):
                        pass
                return (time.perf_counter() - start) / n

        seconds = trio.run(go)
        return seconds, server.connections - 1


def main() -> None:
    threads_before = threading.active_count()
    with SimServer(fast_plan()) as server:
        raw_litellm(server.base_url)  # LiteLLM's one-time lazy setup
        bridged(server.base_url)
        raw, ours = [], []
        for _ in range(5):
            t, n = raw_litellm(server.base_url)
            raw.append(t / n)
            t, n = bridged(server.base_url)
            ours.append(t / n)
    requests = [per_request() for _ in range(3)]
    start = time.perf_counter()
    _, closed = cancel_stalled()
    total = time.perf_counter() - start
    print(f"chunks per stream: ~{TOKENS}")
    print(f"plain litellm under asyncio: {statistics.median(raw) * 1000:.3f} ms/chunk (median of 5)")
    print(f"through the trio bridge:     {statistics.median(ours) * 1000:.3f} ms/chunk (median of 5)")
    print(f"bridge adds:                 {(statistics.median(ours) - statistics.median(raw)) * 1000:.3f} ms/chunk")
    print(f"per request (40 short requests in a row): {statistics.median(r for r, _ in requests) * 1000:.2f} ms, "
          f"{requests[0][1]} TCP connections accepted for them")
    print(f"stalled stream cancelled after 1.0 s; client socket closed {closed * 1000:.1f} ms after the scope exited"
          f" (whole case {total:.2f} s)")
    print(f"threads before {threads_before}, after {threading.active_count()}")


if __name__ == "__main__":
    main()
