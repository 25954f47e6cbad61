"""`pip install` size of the core and of each extra: a wheel of this tree, one fresh venv per variant.

    python bench/install_size.py [--extras server,milvus,qdrant,torch,...] [--keep DIR]

What a user downloads and keeps: each variant is `pip install <wheel>[extra]` into a new venv (no
constraints, so the newest releases the registry offers, as a user gets them), measured as the size of its
site-packages minus that of an empty venv (pip itself). Only `torch` is installed with constraints.txt's pin
(`torch==2.13.0`, the local CPU build): unconstrained, pip resolves the CUDA build (several GB) on Linux.
Prints a markdown table: size, packages installed, and the extra's cost over the core.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EXTRAS = "server,qdrant,milvus,langchain,llamaindex,mcp,bedrock,tracing,torch"


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def site_packages(venv: Path) -> Path:
    (found,) = venv.glob("lib/python3*/site-packages")
    return found


def install(venv: Path, spec: str, constraints: Path | None) -> tuple[float, int]:
    """(site-packages MB, distributions) after installing `spec` into a fresh venv."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    command = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", spec]
    if constraints is not None:
        command += ["-c", str(constraints)]
    subprocess.run(command, check=True)
    site = site_packages(venv)
    return size_mb(site), len(list(site.glob("*.dist-info")))


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--extras", default=DEFAULT_EXTRAS)
    options.add_argument("--keep", type=Path, help="build the venvs here and keep them")
    args = options.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="mini-size-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        wheels = root / "wheel"
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
            check=True,
        )
        (wheel,) = wheels.glob("mini_rag-*.whl")
        subprocess.run([sys.executable, "-m", "venv", str(root / "empty")], check=True)
        base = size_mb(site_packages(root / "empty"))
        rows = []
        core = None
        for extra in ["", *[e for e in args.extras.split(",") if e]]:
            spec = f"{wheel}[{extra}]" if extra else str(wheel)
            pinned = REPO / "constraints.txt" if extra == "torch" else None
            mb, dists = install(root / (extra or "core"), spec, pinned)
            mb -= base
            core = mb if core is None else core
            over = "" if not extra else f"+{mb - core:,.0f}"
            name = f"`mini-rag[{extra}]`" if extra else "`mini-rag` (core)"
            rows.append(f"| {name} | {mb:,.0f} | {over} | {dists - 1} |")  # minus pip
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print("| install | site-packages MB | over the core MB | packages |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
