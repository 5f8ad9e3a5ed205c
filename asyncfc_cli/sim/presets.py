"""Time models of real engines for the simulated model: ``[sim] preset = "NAME"``.

A preset sets the sim's clock (``ttft``, ``prefill_tps``, ``decode_tps``,
``prefix_cache``) to values fitted to a real engine on a real machine, so a
simulated run takes about as long as the same conversation would there.
Values are in the sim's own tokens (four characters each), fitted by
``benchmarks/real_model/clock.py``; what they predict and how well is in
benchmarks/RESULTS.md ("The simulator's clock against llama.cpp"). A key
written next to the preset wins over it.
"""

from __future__ import annotations

from typing import Any, Literal

PresetName = Literal["llama.cpp-smollm2-135m-2core"]

PRESETS: dict[str, dict[str, Any]] = {
    # llama.cpp's llama-server (commit 0c1e570, built by benchmarks/real_model/prepare.py)
    # serving SmolLM2-135M-Instruct Q4_1 on 2 threads of this project's 2-core machine,
    # idle, one slot, its prompt cache on (the default).
    "llama.cpp-smollm2-135m-2core": {
        "ttft": 0.273,
        "prefill_tps": 267.0,
        "decode_tps": 91.6,
        "prefix_cache": True,
    },
}


def apply(data: Any) -> Any:
    """A raw [sim] table with its preset's values filled in where the table sets none."""
    if not isinstance(data, dict) or not isinstance(data.get("preset"), str):
        return data
    values = PRESETS.get(data["preset"])
    if values is None:
        return data  # the field's own validation names the presets
    return {**values, **data}
