"""experiments/tiny.py's resume rule: which nets a fresh machine must train again for the ones still to do."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import tiny  # noqa: E402

P = tiny.PROFILES["cpu"]


def keep(results: Path, *names: str) -> None:
    """Committed evaluation results, as a fresh clone holds them."""
    for n in names:
        f = results / "eval" / f"{n}-multi" / "results.json"
        f.parent.mkdir(parents=True)
        f.write_text(json.dumps({}))


def test_fresh_machine_retrains_up_the_chain(tmp_path):
    results, out = tmp_path / "results", tmp_path / "runs"
    keep(results, "A-S73", "C-S73")  # C-S110 is still to do, and no weights are here
    need = tiny.parents_needed(tiny.grid(P), results, out, {"C-S110"})
    assert need == {"C-S73", "A-S73"}


def test_parent_weights_on_disk_stop_the_chain(tmp_path):
    results, out = tmp_path / "results", tmp_path / "runs"
    keep(results, "A-S73", "C-S73")
    (out / "C-S73").mkdir(parents=True)
    (out / "C-S73" / "final.safetensors").write_bytes(b"")
    assert tiny.parents_needed(tiny.grid(P), results, out, {"C-S110"}) == {"C-S73"}


def test_done_nets_need_nothing_and_controls_start_from_scratch(tmp_path):
    results, out = tmp_path / "results", tmp_path / "runs"
    runs = tiny.grid(P)
    keep(results, *[r["name"] for r in runs if r["name"] != "B-scratch-S73"])
    assert tiny.parents_needed(runs, results, out, None) == set()
    control = next(r for r in runs if r["name"] == "B-scratch-S73")
    assert control["arch"] == "B" and "--init-from" not in control["init"]
