import json
import re
import subprocess
import sys

from vggnet.data.synth import make_synthetic
from vggnet.demo import run_demo


def test_demo_on_user_data_writes_a_real_report(tmp_path):
    make_synthetic(tmp_path / "data", classes=3, per_class=12, val_per_class=4, size=40, seed=5)
    result = run_demo(
        out=tmp_path / "report", data=tmp_path / "data", epochs=2, workers=0, progress=False, batch_size=12
    )
    report = (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "report" / "run" / "best.safetensors").is_file()
    assert len(result["train"]["history"]) == 2
    # The tables hold the measured numbers of this run.
    for res in (result["single"], result["multi"]):
        for p, r in res["protocols"].items():
            assert f"| {p} | {','.join(map(str, res['scales']))} | {r['top1_err']:.1f} |" in report
    assert result["multi"]["scales"] == [32, 40, 48] and result["single"]["scales"] == [40]
    assert re.search(r"chance top-1 error 66\.7%", report)
    # The report's command runs as written in a new shell that has not activated any environment.
    command = report.split("```bash\n")[1].split("\n```")[0].replace("NEW_DIR", str(tmp_path / "again"))
    r = subprocess.run(
        command,
        shell=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert r.returncode == 0, r.stderr
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["protocols"]["dense"]["top1_err"] == result["multi"]["protocols"]["dense"]["top1_err"]


def test_demo_refuses_existing_folder_and_bad_data(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("keep")
    r = subprocess.run(
        [sys.executable, "-m", "vggnet", "demo", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "not empty" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "vggnet", "demo", "--data", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "not a folder" in r.stderr
