"""The simulator's clock checked against a real engine: llama.cpp's llama-server with SmolLM2-135M.

    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/real_model/clock.py [--entries 12] [--threads 2] [--json out.json]

Every speedup the project reports comes from the simulated model's time
model: a request takes ``ttft + prefill/prefill_tps`` to its first token
(prefill: the prompt, or with a prompt cache only what earlier requests of
the run did not prefill) and ``1/decode_tps`` per token after it, tokens
counted the sim's way (four characters each). This script measures the
real thing and fits those parameters to it:

1. The engine itself, in its own tokens (llama-server's ``timings``): time to
   first token of a near-empty prompt, prefill rate with ``cache_prompt``
   off and on, decode rate.
2. Agent conversations like the bench's: BFCL entries (the bench's prompt,
   instructions and tool schemas), each request's reply followed by tool
   results, up to three requests, every request timed from send to the last
   byte; once with the server's prompt cache and once without.
3. The sim's parameters (``ttft``, ``prefill_tps``, ``decode_tps``) fitted to
   half of the conversations by least squares on relative error, with the
   sim's own token counts and prefix cache and the replies the real model
   gave (rendered as the sim would stream them); then, on the other half,
   the sim's predicted request time over the real one, per request: median
   and worst.

Nothing here is asserted: it prints what it measured and the fitted preset.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE.parent))

from real_model.llama_server import MODEL_NAME, Server, llama_server, load_manifest  # noqa: E402

from asyncfc_cli.sim import engine  # noqa: E402
from asyncfc_cli.sim.plan import SimFinal, SimPlan  # noqa: E402
from asyncfc_cli.sim.render import render  # noqa: E402


@dataclass
class Timed:
    """One streamed request: what was sent, what came back, when."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    cache: bool
    sent: float = 0.0
    first: float | None = None  # first chunk carrying text or a tool call
    end: float = 0.0
    text: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)  # llama-server's own

    @property
    def total(self) -> float:
        return self.end - self.sent

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.sent


def stream(server: Server, messages: list[dict[str, Any]], tools: list[dict[str, Any]], cache: bool,
           max_tokens: int = 128, **extra: Any) -> Timed:
    body: dict[str, Any] = {"model": MODEL_NAME, "messages": messages, "stream": True, "max_tokens": max_tokens,
                            "temperature": 0, "cache_prompt": cache, **extra}
    if tools:
        body["tools"] = tools
    out = Timed(messages, tools, cache)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    calls: dict[int, dict[str, Any]] = {}
    try:
        data = json.dumps(body).encode()
        out.sent = time.perf_counter()
        connection.request("POST", "/v1/chat/completions", data, {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"llama-server answered {response.status}: {response.read()[:300]!r}")
        for raw in response:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            chunk = json.loads(payload)
            if chunk.get("timings"):
                out.timings = chunk["timings"]
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if (delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content")) \
                        and out.first is None:
                    out.first = time.perf_counter()
                out.text += delta.get("content") or ""
                for fragment in delta.get("tool_calls") or ():
                    call = calls.setdefault(fragment.get("index", 0), {"id": "", "name": "", "arguments": ""})
                    call["id"] = fragment.get("id") or call["id"]
                    fn = fragment.get("function") or {}
                    call["name"] += fn.get("name") or ""
                    call["arguments"] += fn.get("arguments") or ""
        out.end = time.perf_counter()
    finally:
        connection.close()
    out.calls = [calls[i] for i in sorted(calls)]
    return out


# --- 1. the engine, in its own tokens -------------------------------------------------------------

FILLER = ("The committee reviewed the quarterly figures, the shipping schedule and the notes from the "
          "previous meeting before it agreed on the next steps for every open item. ")


def engine_rates(server: Server, repeat: int) -> dict[str, Any]:
    rows = []
    for words in (8, 150, 400, 800, 1600):
        text = (FILLER * (words // 25 + 1)).split()[:words]
        messages = [{"role": "user", "content": " ".join(text) + "\nSummarize this in one word."}]
        for _ in range(repeat):
            cold = stream(server, messages, [], cache=False, max_tokens=1)
            warm = stream(server, messages, [], cache=True, max_tokens=1)  # same prompt again: all cached
            rows.append({"prompt_n": cold.timings.get("prompt_n"), "cold_ttft": cold.ttft or cold.total,
                         "cold_prompt_ms": cold.timings.get("prompt_ms"),
                         "warm_ttft": warm.ttft or warm.total, "warm_prompt_n": warm.timings.get("prompt_n"),
                         "warm_cache_n": warm.timings.get("cache_n")})
    decode = [stream(server, [{"role": "user", "content": "Count from 1 to 500."}], [], cache=False,
                     max_tokens=256, ignore_eos=True) for _ in range(repeat)]
    big = [r for r in rows if (r["prompt_n"] or 0) > 300]
    smallest = min(r["prompt_n"] or 0 for r in rows)
    # Time to first token against prompt tokens, without the cache: intercept and rate.
    xs, ys = [r["prompt_n"] for r in rows], [r["cold_ttft"] for r in rows]
    slope = statistics.covariance(xs, ys) / statistics.variance(xs)
    return {
        "rows": rows,
        "ttft_base_s": statistics.mean(ys) - slope * statistics.mean(xs),
        "prefill_tps_from_ttft": 1 / slope,
        "smallest_prompt_n": smallest,
        "ttft_small_prompt_s": statistics.median(r["cold_ttft"] for r in rows if r["prompt_n"] == smallest),
        "prefill_tps_no_cache": statistics.median(r["prompt_n"] / (r["cold_prompt_ms"] / 1000) for r in big),
        "ttft_cached_prompt_s": statistics.median(r["warm_ttft"] for r in big),
        "decode_tps": statistics.median(d.timings["predicted_per_second"] for d in decode),
        "decode_tps_client": statistics.median((d.timings["predicted_n"] - 1) / (d.end - d.first) for d in decode),
    }


# --- 2. agent conversations ----------------------------------------------------------------------


def conversations(data_dir: Path, entries: int) -> list[tuple[str, list[dict], list[dict]]]:
    """(id, first messages, tools) for BFCL entries, as the bench sends them."""
    from asyncfc_cli.bench import data
    from asyncfc_cli.bench.latency import Latency
    from asyncfc_cli.bench.workloads import Timing, bfcl_cases

    chosen = []
    per = max(1, entries // 3)
    for category in ("multiple", "parallel", "parallel_multiple"):
        chosen += data.load_single(data_dir, category, per)
    out = []
    for case in bfcl_cases(chosen, Timing(), Latency.parse("const:0"), 0):
        tools = [tool.openai_schema() for tool in case.setup().tools.values()]
        messages = [{"role": "system", "content": case.instructions}, {"role": "user", "content": case.prompt}]
        out.append((case.id, messages, tools))
    return out


def converse(server: Server, messages: list[dict], tools: list[dict], cache: bool, turns: int = 3) -> list[Timed]:
    """Up to ``turns`` requests: each reply's calls answered with small results, as an agent would."""
    messages = list(messages)
    done = []
    for turn in range(turns):
        timed = stream(server, messages, tools, cache)
        done.append(timed)
        if not timed.calls:
            break
        messages.append({"role": "assistant", "content": timed.text or None,
                         "tool_calls": [{"id": c["id"] or f"call_{turn}_{i}", "type": "function",
                                         "function": {"name": c["name"], "arguments": c["arguments"]}}
                                        for i, c in enumerate(timed.calls)]})
        for i, c in enumerate(timed.calls):
            messages.append({"role": "tool", "tool_call_id": c["id"] or f"call_{turn}_{i}",
                             "content": json.dumps({"result": f"{c['name']}#{turn}{i}"})})
    return done


# --- 3. the sim's prediction, and the fit --------------------------------------------------------


def sim_units(conversation: list[Timed], cache: bool) -> list[tuple[float, float]]:
    """For each request: (prefill tokens, decode units) as the sim counts them, on the real replies."""
    prefix = engine.PrefixCache()
    unit = SimPlan(ttft=0, prefill_tps=1e12, decode_tps=1.0, final=SimFinal(answer="x"))
    out = []
    for timed in conversation:
        prompt = engine.prompt_tokens(timed.messages, timed.tools)
        prefill = prefix.prefill_tokens(timed.messages, timed.tools) if cache else prompt
        reply = engine.Reply([engine.Text(timed.text)] if timed.text else [])
        reply.segments += [engine.Call(c["id"] or "c", c["name"], c["arguments"]) for c in timed.calls]
        decode = sum(d for d, _ in render(reply, unit, prompt, random.Random(0), prefill))
        out.append((float(prefill), decode))
    return out


def fit(samples: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """(ttft, prefill_tps, decode_tps) minimizing the squared relative error of
    ttft + p/prefill_tps + d/decode_tps against each real time."""
    # Weighted least squares in (a, b, c) for a + b p + c d ~ t, weights 1/t^2.
    A = [[0.0] * 3 for _ in range(3)]
    y = [0.0] * 3
    for p, d, t in samples:
        row = (1.0, p, d)
        w = 1.0 / (t * t)
        for i in range(3):
            y[i] += w * row[i] * t
            for j in range(3):
                A[i][j] += w * row[i] * row[j]
    a, b, c = _solve(A, y)
    if b <= 0 or c <= 0 or a < 0:
        raise RuntimeError(f"the fit is not physical (ttft {a}, s/prefill token {b}, s/decode token {c}): "
                           "measure more conversations")
    return a, 1.0 / b, 1.0 / c


def _solve(A: list[list[float]], y: list[float]) -> list[float]:
    n = len(y)
    M = [row[:] + [y[i]] for i, row in enumerate(A)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(M[r][col]))
        M[col], M[pivot] = M[pivot], M[col]
        for r in range(n):
            if r != col:
                factor = M[r][col] / M[col][col]
                M[r] = [x - factor * z for x, z in zip(M[r], M[col])]
    return [M[i][n] / M[i][i] for i in range(n)]


def ratios(samples: list[tuple[float, float, float]], params: tuple[float, float, float]) -> list[float]:
    ttft, prefill_tps, decode_tps = params
    return [(ttft + p / prefill_tps + d / decode_tps) / t for p, d, t in samples]


def summary(values: list[float]) -> dict[str, float]:
    worst = max(values, key=lambda r: abs(math.log(r)))
    return {"n": len(values), "median": statistics.median(values), "worst": worst,
            "p10": _quantile(values, 0.1), "p90": _quantile(values, 0.9)}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=12, help="BFCL entries (conversations), split in half")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each engine measurement")
    parser.add_argument("--data", type=Path, default=None, help="BFCL data directory")
    parser.add_argument("--json", type=Path, default=None, help="write every measurement here")
    parser.add_argument("--threads", type=int, default=2, help="llama-server threads (-t)")
    args = parser.parse_args(argv)
    manifest = load_manifest()
    if manifest is None:
        raise SystemExit("not prepared: python benchmarks/real_model/prepare.py")
    from asyncfc_cli.bench.data import find_bfcl_dir

    data_dir = find_bfcl_dir(args.data)
    load = os.getloadavg()[0]
    log = Path(tempfile.mkdtemp()) / "llama-server.log"
    with llama_server(manifest, log, threads=args.threads) as server:
        stream(server, [{"role": "user", "content": "Hello"}], [], cache=False, max_tokens=8)  # warm up
        rates = engine_rates(server, args.repeat)
        runs: dict[bool, list[tuple[str, list[Timed]]]] = {True: [], False: []}
        for cid, messages, tools in conversations(data_dir, args.entries):
            for cache in (True, False):
                runs[cache].append((cid, converse(server, messages, tools, cache)))
                print(f"{cid} cache={cache}: " + ", ".join(f"{t.total:.2f}s" for t in runs[cache][-1][1]),
                      file=sys.stderr)
    result: dict[str, Any] = {"load_before": load, "load_after": os.getloadavg()[0], "engine": rates,
                              "threads": args.threads,
                              "llama_cpp_commit": manifest["llama_cpp_commit"]}
    samples: dict[str, dict[bool, list[tuple[float, float, float]]]] = {"fit": {True: [], False: []},
                                                                      "check": {True: [], False: []}}
    for cache, convs in runs.items():
        for index, (_, conversation) in enumerate(convs):
            half = "fit" if index % 2 == 0 else "check"
            for (p, d), timed in zip(sim_units(conversation, cache), conversation):
                samples[half][cache].append((p, d, timed.total))
    params = fit(samples["fit"][True] + samples["fit"][False])
    result["fitted"] = {"ttft": params[0], "prefill_tps": params[1], "decode_tps": params[2]}
    result["ratios"] = {f"{half} {'cache' if cache else 'no cache'}": summary(ratios(samples[half][cache], params))
                        for half in ("fit", "check") for cache in (True, False) if samples[half][cache]}
    result["requests"] = {f"{'cache' if c else 'no_cache'}": [
        {"id": cid, "request": i + 1, "total": t.total, "ttft": t.ttft, "timings": t.timings, "calls": len(t.calls)}
        for cid, conv in runs[c] for i, t in enumerate(conv)] for c in (True, False)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    e = result["engine"]
    print(f"engine (llama.cpp {manifest['llama_cpp_commit'][:7]}, SmolLM2-135M Q4_1, {args.threads} thread(s); load "
          f"{result['load_before']:.1f} -> {result['load_after']:.1f}):")
    print(f"  ttft, {e['smallest_prompt_n']}-token prompt:     {e['ttft_small_prompt_s'] * 1000:.0f} ms "
          f"(fit over prompt sizes: {e['ttft_base_s'] * 1000:.0f} ms + n / {e['prefill_tps_from_ttft']:.0f} per s)")
    print(f"  prefill, no cache:          {e['prefill_tps_no_cache']:.0f} tokens/s (its tokens)")
    print(f"  ttft, prompt all cached:    {e['ttft_cached_prompt_s'] * 1000:.0f} ms")
    print(f"  decode:                     {e['decode_tps']:.0f} tokens/s (server), "
          f"{e['decode_tps_client']:.0f} tokens/s (client)")
    f = result["fitted"]
    print(f"fitted sim parameters (sim tokens): ttft = {f['ttft']:.3f}, prefill_tps = {f['prefill_tps']:.0f}, "
          f"decode_tps = {f['decode_tps']:.1f}")
    for name, s in result["ratios"].items():
        print(f"  predicted / real, {name:16} n={s['n']:3}  median {s['median']:.2f}  p10 {s['p10']:.2f}  "
              f"p90 {s['p90']:.2f}  worst {s['worst']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
