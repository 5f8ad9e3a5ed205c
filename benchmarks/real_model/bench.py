"""BFCL on the real model: start the prepared llama-server, run ``asyncfc bench bfcl --model`` on it.

    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/real_model/bench.py \\
        [--threads 1] [--json out.json] -- --category parallel,multiple --limit 4

Everything after ``--`` goes to ``asyncfc bench bfcl`` as it is; this script
adds ``--model openai/smollm2-135m --api-base http://127.0.0.1:PORT/v1``, the
way docs/local-models.md tells users to reach a local server. The server caps
every request at 256 tokens (``-n``): the bench sets no ``max_tokens`` of its
own, and a 135M model can otherwise decode until its context is full.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from real_model.llama_server import MODEL_NAME, llama_server, load_manifest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, rest = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--json", type=Path, default=None, help="write the bench's JSON document here")
    args = parser.parse_args(ours)
    manifest = load_manifest()
    if manifest is None:
        raise SystemExit("not prepared: python benchmarks/real_model/prepare.py")
    log = Path(tempfile.mkdtemp()) / "llama-server.log"
    with llama_server(manifest, log, threads=args.threads, ctx=args.ctx) as server:
        command = [sys.executable, "-m", "asyncfc_cli", "bench", "bfcl", "--model", f"openai/{MODEL_NAME}",
                   "--api-base", server.base_url, *rest]
        if args.json:
            command.append("--json")
        print("$ " + " ".join(command[2:]), file=sys.stderr, flush=True)
        out = open(args.json, "w") if args.json else None
        try:
            done = subprocess.run(command, stdout=out, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
        finally:
            if out:
                out.close()
    print(f"llama-server log: {log}", file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
