"""docs/local-models.md: every agents.toml entry in it resolves as a model
(`asyncfc models`), including the servers this machine cannot run (Ollama,
vLLM). The llama.cpp example is run for real in tests/test_real_model.py."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import invoke

DOC = Path(__file__).parent.parent / "docs" / "local-models.md"


def toml_blocks() -> list[str]:
    text = DOC.read_text()
    return [b.split("\n", 1)[1] for b in text.split("```")[1::2] if b.startswith("toml\n")]


def test_every_model_entry_in_the_doc_resolves_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    seen = {}
    for index, block in enumerate(toml_blocks()):
        path = tmp_path / f"agents{index}.toml"
        path.write_text(block)
        result = invoke("models", "--agents", str(path), "--json", catch_exceptions=False)
        assert result.exit_code == 0, result.output
        for model in json.loads(result.stdout)["models"]:
            seen[model["ref"]] = model
    assert set(seen) == {"llamacpp", "ollama", "vllm"}
    for model in seen.values():
        assert model["model"].startswith("openai/") and model["api_base"].startswith("http://127.0.0.1:")
