"""The benchmark cases: a simulated model's plan, the tools it calls, and what "correct" means.

Five families (issue 5):

``bfcl_cases``       BFCL single-turn entries: the plan is the ground truth, tools
                     return deterministic results after a seeded latency; correct =
                     the AST checker accepts the calls made.
``multiturn_cases``  BFCL multi-turn sessions that only use the file system, on our
                     own :mod:`~asyncfc_cli.bench.fs`, every tool ``ordered``; correct =
                     calls ran in issue order with the same results and final state as sync.
``dag_cases``        seeded layered DAGs (width, depth, fan-in, latency and think
                     distributions, a share of values the model must read).
``nogain_cases``     the model needs every value as soon as it asks for it: nothing
                     for async to overlap, so its extra request and tokens show.
``inspect_cases``    code inspection with real processes (grep, head, wc, pytest) on
                     the fixture repository in ``benchmarks/fixture_repo``.

A :class:`Case` builds fresh tools for every run (``setup``), so stateful tools
(the file system) start from the same state in every mode.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from asyncfc_cli.bench import checker, data as bfcl_data, fs
from asyncfc_cli.bench.latency import Latency, seeded
from asyncfc_cli.sim.plan import SimPlan
from asyncfc_cli.tools import Tool, build_tool

def _project_root() -> Path:
    """The checkout that holds benchmarks/: the current directory or a parent
    of it, else the package's own parent (an editable install). A regular
    install does not ship benchmarks/, so the package location alone is not
    enough."""
    cwd = Path.cwd()
    for base in (cwd, *cwd.parents, Path(__file__).resolve().parents[2]):
        if (base / "benchmarks" / "fixture_repo").is_dir():
            return base
    return cwd


REPO_ROOT = _project_root()
FIXTURE_REPO = REPO_ROOT / "benchmarks" / "fixture_repo"


@dataclass(frozen=True)
class Timing:
    """How the simulated model decodes; the same for every mode of an invocation."""

    decode_tps: float = 50.0
    ttft: float = 0.25
    prefill_tps: float = 5000.0
    jitter: float = 0.0
    chunk_chars: int = 4
    prefix_cache: bool = True  # the server prefills only what earlier requests of the run did not

    def plan_fields(self) -> dict[str, Any]:
        return {"decode_tps": self.decode_tps, "ttft": self.ttft, "prefill_tps": self.prefill_tps,
                "jitter": self.jitter, "chunk_chars": self.chunk_chars, "prefix_cache": self.prefix_cache}


@dataclass
class Setup:
    """The tools of one run and whatever state they share (checked afterwards)."""

    tools: dict[str, Tool]
    state: Any = None


@dataclass
class Case:
    id: str
    workload: str
    plan: SimPlan
    prompt: str
    setup: Callable[[], Setup]
    instructions: str = ""
    latency: dict[str, float] | None = None  # per step id; None: measured in the sync run
    # (record, sync record) -> (correct, reason); None: the answer must equal sync's
    check: Callable[[Any, Any], tuple[bool, str]] | None = None
    max_concurrency: int = 64
    info: dict[str, Any] = field(default_factory=dict)


def _escape(value: Any) -> Any:
    """Plan arguments are templates: literal braces must be doubled."""
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


def canonical(args: Any) -> str:
    return json.dumps(args, sort_keys=True, ensure_ascii=False, default=str)


def short_digest(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:8]


def _plan(timing: Timing, seed: int, steps: list[dict[str, Any]], final: dict[str, Any]) -> SimPlan:
    return SimPlan.model_validate({**timing.plan_fields(), "seed": seed, "steps": steps, "final": final})


# --- BFCL single turn -------------------------------------------------------------------

BFCL_INSTRUCTIONS = (
    "You are a function-calling assistant. Call the functions the request needs, with the "
    "values the request gives, then answer in one short sentence."
)


def bfcl_tool(tool_name: str, function: dict[str, Any], latency: Latency, seed: int) -> Tool:
    """A BFCL function as a tool: its schema as given, a deterministic result after a seeded latency."""

    async def runner(args: dict[str, Any]) -> Any:
        await trio.sleep(latency.draw(seed, tool_name, canonical(args)))
        return {"result": f"{tool_name}#{short_digest(args)}"}

    return Tool(name=tool_name, description=function.get("description", ""),
                parameters=bfcl_data.json_schema(function.get("parameters") or {"type": "object"}),
                kind="python", runner=runner, source="bench:bfcl")


def bfcl_setup(entry: bfcl_data.Entry, latency: Latency, seed: int) -> Callable[[], Setup]:
    by_name = {f["name"]: f for f in entry.functions}

    def setup() -> Setup:
        return Setup({tool: bfcl_tool(tool, by_name[name], latency, seed) for tool, name in entry.names.items()})

    return setup


def bfcl_check(entry: bfcl_data.Entry) -> Callable[[Any, Any], tuple[bool, str]]:
    def check(record: Any, _sync: Any) -> tuple[bool, str]:
        verdict = checker.check(calls_made(record.calls, entry.names), entry.ground_truth, entry.functions)
        return verdict.ok, verdict.reason

    return check


def calls_made(calls: list[Any], names: dict[str, str]) -> list[checker.Call]:
    """The calls of a run as (BFCL function name, arguments), ``wait`` excluded."""
    out = []
    for call in calls:
        arguments = call.arguments if call.arguments is not None else call.raw_arguments
        out.append((names.get(call.tool, call.tool), arguments))
    return out


def bfcl_cases(entries: list[bfcl_data.Entry], timing: Timing, latency: Latency, seed: int,
               think: int = 0) -> list[Case]:
    cases = []
    for entry in entries:
        tool_of = {name: tool for tool, name in entry.names.items()}
        steps, lat = [], {}
        for i, (name, args) in enumerate(checker.ground_truth_calls(entry.ground_truth), start=1):
            tool = tool_of[name]
            steps.append({"id": f"c{i}", "think": think, "tool": tool, "args": _escape(args)})
            lat[f"c{i}"] = latency.draw(seed, tool, canonical(args))
        answer = "Done: " + "; ".join(f"{{{s['id']}.result}}" for s in steps) + "."
        plan = _plan(timing, seed, steps, {"answer": answer})
        cases.append(Case(
            id=f"{entry.id}@{seed}", workload=f"bfcl-{entry.category}", plan=plan,
            prompt=entry.prompt, instructions="\n\n".join(p for p in (BFCL_INSTRUCTIONS, entry.system) if p),
            setup=bfcl_setup(entry, latency, seed), latency=lat, check=bfcl_check(entry),
            info={"entry": entry.id, "calls": len(steps)},
        ))
    return cases


# --- BFCL multi turn: the file system ---------------------------------------------------

MULTITURN_INSTRUCTIONS = (
    "You operate a file system through its tools, one user turn after another. Commands act on "
    "the current directory."
)


@dataclass
class FsState:
    fs: fs.FileSystem
    log: list[tuple[str, str, str]] = field(default_factory=list)  # (tool, args, result) as they ran


def fs_setup(entry: bfcl_data.MultiTurnEntry, doc: list[dict[str, Any]], latency: Latency,
             seed: int) -> Callable[[], Setup]:
    excluded = set(entry.excluded)  # BFCL hides some tools from some sessions

    def setup() -> Setup:
        state = FsState(fs.FileSystem(entry.initial_config.get("GorillaFileSystem")))
        tools = {}
        for function in doc:
            name = function["name"]
            if name in excluded:
                continue
            tools[name] = _fs_tool(name, function, state, latency, seed)
        return Setup(tools, state)

    return setup


def _fs_tool(name: str, function: dict[str, Any], state: FsState, latency: Latency, seed: int) -> Tool:
    async def runner(args: dict[str, Any]) -> Any:
        # The effect lands when the call completes, like a remote command's.
        await trio.sleep(latency.draw(seed, name, canonical(args)))
        result = state.fs.call(name, args)
        state.log.append((name, canonical(args), canonical(result)))
        return result

    description = function.get("description", "").split("Tool description: ")[-1]
    return Tool(name=name, description=description,
                parameters=bfcl_data.json_schema(function.get("parameters") or {"type": "object"}),
                kind="python", runner=runner, ordered=True, source="bench:fs")


def fs_check(record: Any, sync: Any) -> tuple[bool, str]:
    """Order kept (ops ran in issue order), and the same results and final state as sync."""
    state: FsState = record.state
    issued = [(c.tool, canonical(c.arguments)) for c in record.calls if c.status == "ok"]
    ran = [(t, a) for t, a, _ in state.log]
    if ran != issued:
        first = next((i for i, (a, b) in enumerate(zip(ran, issued)) if a != b), min(len(ran), len(issued)))
        return False, f"order broken at call {first + 1}: ran {ran[first:first + 1]}, issued {issued[first:first + 1]}"
    if sync is not None and sync is not record:
        if state.log != sync.state.log:
            return False, "results differ from sync"
        if state.fs.snapshot() != sync.state.fs.snapshot():
            return False, "final file-system state differs from sync"
    return True, ""


def fs_entries(data_dir: Path) -> tuple[list[tuple[bfcl_data.MultiTurnEntry, list[list[tuple[str, dict]]]]], list[dict]]:
    """Multi-turn entries whose ground truth only uses the file system, with parsed calls."""
    doc = bfcl_data.load_func_doc(data_dir, "gorilla_file_system")
    params = {f["name"]: list((f.get("parameters") or {}).get("properties") or {}) for f in doc}
    out = []
    for entry in bfcl_data.load_multi_turn(data_dir):
        if "GorillaFileSystem" not in entry.initial_config:
            continue
        try:
            turns = [[fs.parse_call(c, params) for c in turn] for turn in entry.ground_truth]
        except (ValueError, SyntaxError):
            continue
        if all(name in params for turn in turns for name, _ in turn) and any(turns):
            out.append((entry, turns))
    return out, doc


def multiturn_cases(data_dir: Path, timing: Timing, latency: Latency, seed: int, limit: int | None = None,
                    turn_think: int = 24) -> list[Case]:
    """Each session as one run: the turns' requests in one prompt, each turn's calls
    issued together, and the model reading every result of a turn (its reply to the
    user) before it starts the next one, ``turn_think`` tokens later."""
    entries, doc = fs_entries(data_dir)
    cases = []
    for entry, turns in entries[:limit]:
        steps: list[dict[str, Any]] = []
        lat: dict[str, float] = {}
        previous: list[str] = []
        for t, turn in enumerate(turns, start=1):
            current = []
            for i, (name, args) in enumerate(turn, start=1):
                sid = f"t{t}_{i}"
                step = {"id": sid, "tool": name, "args": _escape(args)}
                if i == 1 and previous:
                    step.update(needs=list(previous), think=turn_think)
                steps.append(step)
                lat[sid] = latency.draw(seed, name, canonical(args))
                current.append(sid)
            previous = current or previous
        prompt = "\n".join(
            f"Turn {t}: " + " ".join(str(m.get("content", "")) for m in turn if m.get("role") == "user")
            for t, turn in enumerate(entry.turns, start=1)
        )
        plan = _plan(timing, seed, steps, {"answer": f"All {len(turns)} turns done; last result: {{{steps[-1]['id']}}}"})
        cases.append(Case(
            id=f"{entry.id}@{seed}", workload="bfcl-multi-turn", plan=plan, prompt=prompt,
            instructions=MULTITURN_INSTRUCTIONS, setup=fs_setup(entry, doc, latency, seed), latency=lat,
            check=fs_check, info={"entry": entry.id, "calls": len(steps), "turns": len(turns)},
        ))
    return cases


# --- generic work tool (DAGs, no-gain) --------------------------------------------------


def work_tool(latency: dict[str, float]) -> Tool:
    """``work(key, inputs)``: sleeps the key's latency, returns a value derived from key and inputs."""

    async def runner(args: dict[str, Any]) -> Any:
        key = str(args.get("key"))
        await trio.sleep(latency.get(key, 0.0))
        inputs = args.get("inputs") or []
        total = sum(v for v in inputs if isinstance(v, (int, float)) and not isinstance(v, bool))
        return {"key": key, "value": (int(short_digest(key), 16) % 1000 + int(total)) % 100000}

    return Tool(
        name="work", description="Do one unit of work on the inputs and return its value.",
        parameters={"type": "object", "properties": {
            "key": {"type": "string", "description": "Name of this unit of work"},
            "inputs": {"type": "array", "items": {"type": "integer"}, "description": "Values it depends on"},
        }, "required": ["key"]},
        kind="python", runner=runner, source="bench:work",
    )


def _work_setup(latency: dict[str, float]) -> Callable[[], Setup]:
    return lambda: Setup({"work": work_tool(latency)})


WORK_INSTRUCTIONS = "Plan the work, run it with the tool, and report the final values."


def dag_plan_steps(width: int, depth: int, fan_in: int, read_share: float, think: Latency,
                   rng_seed: int) -> list[dict[str, Any]]:
    """Layer 0 has ``width`` independent steps; every later step takes ``fan_in``
    values from the layer above, each read by the model (``needs``) with
    probability ``read_share``, else only forwarded."""
    rng = seeded(rng_seed, "dag-shape")
    steps: list[dict[str, Any]] = []
    above: list[str] = []
    for layer in range(depth):
        here = []
        for j in range(width):
            sid = f"n{layer}_{j}"
            parents = rng.sample(above, min(fan_in, len(above))) if above else []
            needs = [p for p in parents if rng.random() < read_share]
            step = {"id": sid, "think": int(round(think.sample(rng))), "tool": "work",
                    "args": {"key": sid, **({"inputs": [f"{{{p}.value}}" for p in parents]} if parents else {})}}
            if needs:
                step["needs"] = needs
            steps.append(step)
            here.append(sid)
        above = here
    return steps


def dag_cases(timing: Timing, width: int, depth: int, fan_in: int, latency: Latency, think: Latency,
              read_share: float, seeds: list[int]) -> list[Case]:
    cases = []
    for seed in seeds:
        steps = dag_plan_steps(width, depth, fan_in, read_share, think, seed)
        lat = {s["id"]: latency.draw(seed, "dag", s["id"]) for s in steps}
        last = [s["id"] for s in steps if s["id"].startswith(f"n{depth - 1}_")]
        answer = "Values: " + ", ".join(f"{sid}={{{sid}.value}}" for sid in last)
        plan = _plan(timing, seed, steps, {"answer": answer, "think": 8})
        cases.append(Case(
            id=f"dag-w{width}d{depth}f{fan_in}@{seed}", workload="dag", plan=plan,
            prompt=f"Run the {width}x{depth} job graph and report the final values.",
            instructions=WORK_INSTRUCTIONS, setup=_work_setup(lat), latency=lat,
            info={"width": width, "depth": depth, "fan_in": fan_in, "latency": str(latency),
                  "read_share": read_share, "calls": len(steps)},
        ))
    return cases


# --- no-gain ------------------------------------------------------------------------------


def nogain_cases(timing: Timing, latencies: tuple[float, ...] = (0.05, 0.3, 1.0), fan: int = 3,
                 chain: int = 3, seed: int = 0) -> list[Case]:
    """Plans where every value is needed right after it is asked for.

    ``fan``: ``fan`` independent calls, then an answer that reads them all.
    ``chain``: each call needs the previous call's value before it can be written.
    ``unread``: two calls, the answer quotes only the first: an async model answers
    before the second resolves, and the finish rule makes it answer twice.
    Async has nothing to overlap but the few tokens between calls, and pays a
    ``wait`` request whenever the tools are slower than building the next request.
    """
    cases = []
    for lat_s in latencies:
        fan_steps = [{"id": f"a{i}", "tool": "work", "args": {"key": f"a{i}"}} for i in range(fan)]
        chain_steps = []
        for i in range(chain):
            step: dict[str, Any] = {"id": f"b{i}", "tool": "work", "args": {"key": f"b{i}"}}
            if i:
                step["args"]["inputs"] = [f"{{b{i - 1}.value}}"]
                step["needs"] = [f"b{i - 1}"]
            chain_steps.append(step)
        unread_steps = [{"id": "u0", "tool": "work", "args": {"key": "u0"}},
                        {"id": "u1", "tool": "work", "args": {"key": "u1"}}]
        for shape, steps in (("fan", fan_steps), ("chain", chain_steps), ("unread", unread_steps)):
            lat = {s["id"]: lat_s * (2 if s["id"] == "u1" else 1) for s in steps}
            answer = "Values: " + ", ".join(f"{{{s['id']}.value}}" for s in steps)
            if shape == "unread":
                # The answer quotes u0 only: in async the model answers while u1 is
                # still running, the finish rule holds it, and it is decoded twice.
                answer = ("The first value is {u0.value}; the second call was only a side effect, "
                          "so this answer does not need to read it.")
            cases.append(Case(
                id=f"nogain-{shape}{len(steps)}-L{lat_s:g}", workload="no-gain",
                plan=_plan(timing, seed, steps, {"answer": answer}),
                prompt=f"Get the {len(steps)} values and report them.", instructions=WORK_INSTRUCTIONS,
                setup=_work_setup(lat), latency=lat, info={"shape": shape, "latency": lat_s, "calls": len(steps)},
            ))
    return cases


# --- code inspection, real processes ----------------------------------------------------

_DURATION = re.compile(r"\b\d+(\.\d+)?s\b")


def same_answer(record: Any, sync: Any) -> tuple[bool, str]:
    """The answer equals sync's, with durations (pytest's "in 0.12s") ignored."""
    if sync is None or record is sync:
        return record.status == "ok", record.error or ""
    a, b = (_DURATION.sub("<t>", x.answer or "") for x in (record, sync))
    return (a == b and record.status == "ok"), ("" if a == b else "answer differs from sync")


def inspect_tools(repo: Path) -> dict[str, Tool]:
    """Command tools on the fixture repository: argv, no shell, paths kept inside it."""
    base = repo.resolve()
    raw = {
        "grep": {
            "description": "Search the repository's files for a regular expression; prints file:line:text.",
            "command": ["grep", "-rn", "-I", "--exclude-dir=__pycache__", "-e", "{pattern}", "--", "{path}"],
            "root": ".", "ok_codes": [0, 1], "timeout": 30,
            "params": {"pattern": {"type": "string", "description": "Regular expression"},
                       "path": {"type": "string", "description": "File or directory", "default": ".", "path": True}},
        },
        "read_file": {
            "description": "Read the first lines of a file.",
            "command": ["head", "-n", "{lines}", "--", "{path}"], "root": ".", "timeout": 30,
            "params": {"path": {"type": "string", "description": "File", "path": True},
                       "lines": {"type": "integer", "description": "How many lines", "default": 40}},
        },
        "count_lines": {
            "description": "Count lines and words of one file (wc -l -w).",
            "command": ["wc", "-l", "-w", "--", "{path}"], "root": ".", "timeout": 30,
            "params": {"path": {"type": "string", "description": "File", "path": True}},
        },
        "run_tests": {
            "description": "Run the repository's pytest suite (or one test file) and report the outcome.",
            "command": [sys.executable, "-m", "pytest", "-q", "--no-header", "-p", "no:cacheprovider", "{path}"],
            "root": ".", "ok_codes": [0, 1], "timeout": 120,
            "params": {"path": {"type": "string", "description": "Test file or directory", "default": ".", "path": True}},
        },
    }
    return {name: build_tool(name, cfg, base) for name, cfg in raw.items()}


def inspect_cases(timing: Timing, repo: Path | None = None, seed: int = 0) -> list[Case]:
    """Find the TODOs, size and read the modules, run the tests, then look at the TODO's file."""
    repo = repo or FIXTURE_REPO
    steps = [
        {"id": "tests", "think": 12, "tool": "run_tests", "args": {"path": "."}},
        {"id": "todo", "think": 6, "tool": "grep", "args": {"pattern": "TODO", "path": "ledger"}},
        {"id": "raises", "tool": "grep", "args": {"pattern": "raise ", "path": "ledger"}},
        {"id": "size_acc", "tool": "count_lines", "args": {"path": "ledger/accounts.py"}},
        {"id": "size_rep", "tool": "count_lines", "args": {"path": "ledger/report.py"}},
        {"id": "head_cur", "think": 6, "tool": "read_file", "args": {"path": "ledger/currency.py", "lines": 12}},
        {"id": "head_todo", "think": 10, "tool": "read_file", "args": {"path": "ledger/report.py", "lines": 20},
         "needs": ["todo"]},
    ]
    # A short report quoting a few outputs; the answer still reads every result (needs).
    answer = "TODOs:\n{todo.stdout}\nTests: {tests.stdout}\nSizes (lines, words): {size_acc.stdout}{size_rep.stdout}"
    plan = _plan(timing, seed, steps, {"answer": answer, "think": 24, "needs": [s["id"] for s in steps]})

    def setup() -> Setup:
        return Setup(inspect_tools(repo))

    return [Case(
        id="inspect-fixture", workload="code-inspection", plan=plan,
        prompt="Inspect the ledger repository: list its TODOs and the errors it raises, size the "
               "accounts and report modules, run the test suite, and show the code around the TODOs.",
        instructions="You inspect code with the tools given. Report briefly.",
        setup=setup, latency=None, check=same_answer, info={"repo": str(repo), "calls": len(steps)},
    )]


def by_step(calls: list[Any], plan: SimPlan) -> dict[str, Any]:
    """The latest call record of each plan step (call ids name their step)."""
    from asyncfc_cli.sim.engine import step_of_call

    out = {}
    for call in calls:
        sid = step_of_call(call.call_id, plan)
        if sid is not None:
            out[sid] = call
    return out
