"""Shared by the experiment scripts: run a vggnet command (printed and logged; a failure stops the
script), and write one generated section of docs/RESULTS.md without touching the others."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VGGNET = [sys.executable, "-m", "vggnet"]


SHOWN_FROM = ("runs", "tiny-imagenet-200")  # folders the docs' commands name as if at the root


def rel(arg) -> str:
    """A path as seen from the repository root; a runs folder or the Tiny ImageNet tree, wherever
    this machine keeps it, as the docs name it (``runs/...``, ``tiny-imagenet-200/...``), so that the
    listed commands read the same from every machine."""
    text = str(arg)
    if text.startswith("/"):
        parts = Path(text).parts
        for name in SHOWN_FROM:
            if name in parts:
                return "/".join(parts[parts.index(name) :])
    return text.replace(str(ROOT) + "/", "").replace(str(ROOT.parent) + "/", "../")


def shown(cmd: list) -> str:
    """A command as a user types it (``vggnet ...``, repository-relative paths)."""
    return "vggnet " + " ".join(shlex.quote(rel(c)) for c in cmd[len(VGGNET) :])


def run(cmd: list, log: Path, done: Path | None = None) -> None:
    """Run `cmd` unless `done` exists (so a script resumes where it stopped)."""
    if done is not None and done.exists():
        return
    print("$ " + shown(cmd), flush=True)
    with open(log, "a") as f:
        f.write("$ " + shown(cmd) + "\n")
        f.flush()
        r = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if r.returncode:
        raise SystemExit(f"command failed ({r.returncode}); see {log}")


def copy_results(src: Path, dest: Path, folders) -> None:
    """Every ``FOLDER/NAME/results.json`` under `src` (FOLDER in `folders`) that `dest` lacks, at the
    same place: kept results (committed) stand for finished steps on a fresh machine."""
    for f in sorted(src.glob("*/*/results.json")):
        target = dest / f.relative_to(src)
        if f.parts[-3] in folders and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)


def write_section(path: Path, name: str, text: str) -> None:
    """Replace the section `name` of a generated document (between its markers), or append it."""
    begin, end = f"<!-- BEGIN {name} (generated) -->", f"<!-- END {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}\n"
    doc = path.read_text() if path.exists() else ""
    if begin in doc and end in doc:
        doc = doc[: doc.index(begin)] + block + doc[doc.index(end) + len(end) + 1 :]
    else:
        doc = (doc.rstrip() + "\n\n" if doc.strip() else "") + block
    path.write_text(doc)


def grid_arguments(
    doc: str,
    profiles: dict,
    data_default: str | None,
    default_profile: str = "cpu",
    report_only: bool = False,
):
    """The command line every grid script shares (data, profile, folders, device, workers)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=data_default, required=data_default is None)
    ap.add_argument("--profile", choices=profiles, default=default_profile)
    ap.add_argument("--out", help="runs folder (default runs/<grid>-<profile>)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--results", default=str(ROOT / "docs" / "RESULTS.md"))
    ap.add_argument("--only", help="comma-separated run names to train (default: all, in the chain's order)")
    if report_only:
        ap.add_argument(
            "--report-only",
            action="store_true",
            help="rewrite the results section from the kept results only",
        )
    return ap.parse_args()
