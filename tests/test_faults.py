"""Training that survives the faults clusters produce (docs/RELIABILITY.md, promise 11): a rank
killed or hung, a restart by torchrun, a preemption. Real processes, gloo on the CPU, a tiny net
and a few dozen steps; the weights are compared bit for bit with an uninterrupted run of the same
command on this machine."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vggnet.data.synth import make_synthetic
from vggnet.engine.train import SYNC_EVERY
from vggnet.errors import VGGError
from vggnet.models import load_model, read_meta

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    make_synthetic(root / "d", classes=4, per_class=16, val_per_class=2, size=40, seed=3, workers=2)
    return root / "d"


def train_args(synth, out, *extra):
    """64 images, batch 4: 16 steps an epoch (one agreed stop inside it, at step SYNC_EVERY)."""
    return [
        "train",
        "--arch",
        "A",
        "--width",
        "0.0625",
        "--fc-dim",
        "16",
        "--crop",
        "32",
        "--scale",
        "32:40",
        "--data",
        str(synth / "train"),
        "--val-data",
        str(synth / "val"),
        "--batch-size",
        "4",
        "--lr",
        "0.01",
        "--epochs",
        "2",
        "--workers",
        "0",
        "--out",
        str(out),
        "--no-progress",
        "--init",
        "glorot",
        "--dropout",
        "0.3",
        "--stats-max-images",
        "16",
        "--checkpoint-steps",
        "1",
        "--deterministic",
        "--resume",
        "auto",
        *extra,
    ]


def start(argv, env=None):
    """`python ARGV` in its own session (killed as a group if a test fails)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0", **(env or {}))
    return subprocess.Popen(
        [sys.executable, *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def children(pid: int) -> list[int]:
    """The processes `pid` started (torchrun's workers live in sessions of their own)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return found


def finish(process, timeout=120):
    """(exit status, stderr); a process still running after `timeout` seconds is a hang: killed
    with everything it started, and the test fails."""
    try:
        process.out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        for pid in children(process.pid):
            os.kill(pid, signal.SIGKILL)
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"{process.args} still running after {timeout} s") from e
    return process.returncode, err


def torchrun_train(synth, out, *launcher):
    # --standalone: torchrun picks a free local rendezvous port itself (no race with other runs).
    return start(
        [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            *launcher,
            "-m",
            "vggnet",
            *train_args(synth, out),
        ]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_ranks(synth, out, *extra):
    """Two processes started without torchrun, as srun or any launcher that sets the environment does."""
    port = free_port()
    return [
        start(
            ["-m", "vggnet", *train_args(synth, out, *extra)],
            dict(
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
                RANK=str(r),
                LOCAL_RANK=str(r),
                WORLD_SIZE="2",
                LOCAL_WORLD_SIZE="2",
            ),
        )
        for r in range(2)
    ]


def position(run):
    """(epoch, step) of the run's last checkpoint, or None."""
    try:
        state = read_meta(Path(run) / "last.safetensors").train_state
        return state["epoch"], state["step"]
    except VGGError:
        return None


def wait_for_checkpoint(run, processes, at=(0, 3), timeout=120):
    """Until the last checkpoint is at (epoch, step) `at` or later."""
    deadline = time.time() + timeout
    while (position(run) or (-1, 0)) < at:
        assert time.time() < deadline and all(p.poll() is None for p in processes), "the run ended early"
        time.sleep(0.05)


def weights(path):
    return load_model(path)[0].state_dict()


def assert_same_weights(a, b):
    a, b = weights(a), weights(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(synth, tmp_path_factory):
    """The uninterrupted 2-process run every interrupted one must end equal to."""
    out = tmp_path_factory.mktemp("reference") / "run"
    rc, err = finish(torchrun_train(synth, out), timeout=300)
    assert rc == 0, err[-3000:]
    return out / "final.safetensors"


def one_error_line(err: str, rank: int) -> str:
    """Rank `rank`'s stderr: one `vggnet train: error:` line, and nothing else."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vggnet train: error:"), err
    assert f"rank {rank} stops too" in lines[0], lines[0]
    return lines[0]


def test_a_killed_rank_stops_the_other_in_one_line_and_the_same_command_resumes_exactly(
    synth, tmp_path, reference
):
    run = tmp_path / "run"
    ranks = two_ranks(synth, run)
    wait_for_checkpoint(run, ranks, at=(1, 3))  # mid-way through the second epoch
    ranks[1].send_signal(signal.SIGKILL)
    rc, err = finish(ranks[0], timeout=60)  # a killed peer closes its connections: noticed at once
    finish(ranks[1])
    line = one_error_line(err, 0)
    assert rc == 2 and "rank 1 of 2 stopped answering" in line and "--resume auto" in line, line
    assert "last.safetensors holds the run as it was after step" in line
    epoch, step = position(run)  # an intact checkpoint, no leftover of a half-written one
    assert epoch == 1 and step >= 3 and not list(run.glob(".*.tmp"))
    assert not (run / "final.safetensors").exists()
    again = two_ranks(synth, run)  # the same command
    for r in again:
        rc, err = finish(r)
        assert rc == 0, err[-3000:]
    assert_same_weights(reference, run / "final.safetensors")


def test_a_hung_rank_is_given_up_on_after_the_collective_timeout(synth, tmp_path):
    run = tmp_path / "run"
    ranks = two_ranks(synth, run, "--collective-timeout", "0.1")  # 6 s
    try:
        wait_for_checkpoint(run, ranks, at=(0, 3))
        ranks[1].send_signal(signal.SIGSTOP)  # alive, but silent: a hung process or a lost machine
        rc, err = finish(ranks[0], timeout=90)
    finally:
        ranks[1].send_signal(signal.SIGKILL)
        finish(ranks[1])
    line = one_error_line(err, 0)
    assert rc == 2 and "rank 1 of 2 stopped answering" in line, line
    assert "0.1-minute collective timeout" in line
    assert position(run)[0] == 0 and not list(run.glob(".*.tmp"))


def test_torchrun_restarts_a_run_with_a_killed_rank_and_it_ends_as_if_uninterrupted(
    synth, tmp_path, reference
):
    run = tmp_path / "run"
    launcher = torchrun_train(synth, run, "--max-restarts", "1")
    wait_for_checkpoint(run, [launcher], at=(0, 5))
    killed = int((run / "run.lock").read_text())  # rank 0, whose pid the lock holds
    os.kill(killed, signal.SIGKILL)
    rc, err = finish(launcher, timeout=300)
    assert rc == 0, err[-3000:]
    assert "resuming at epoch" in launcher.out  # torchrun started the command again, which continued
    assert_same_weights(reference, run / "final.safetensors")


def test_sigterm_to_torchrun_checkpoints_every_rank_at_one_agreed_step(synth, tmp_path, reference):
    run = tmp_path / "run"
    launcher = torchrun_train(synth, run)
    wait_for_checkpoint(run, [launcher], at=(0, 1))
    launcher.send_signal(signal.SIGTERM)  # a preemption: torchrun forwards it to every rank
    rc, err = finish(launcher, timeout=60)  # within torchrun's grace (--shutdown-timeout, 30 s)
    # Each rank says so and exits with 130 (torchrun itself, signalled, exits with 1).
    assert rc != 0 and err.count("interrupted: SIGTERM: checkpoint written") == 2, err[-3000:]
    assert "vggnet train: error" not in err
    epoch, step = position(run)  # one agreed step: a multiple of SYNC_EVERY, or the epoch's last (16)
    assert epoch == 0 and step in (SYNC_EVERY, 16) and not (run / "final.safetensors").exists()
    rc, err = finish(torchrun_train(synth, run), timeout=300)  # the requeued job: the same command
    assert rc == 0, err[-3000:]
    assert_same_weights(reference, run / "final.safetensors")


def test_sigterm_to_every_process_of_the_job_checkpoints(synth, tmp_path):
    """A scheduler that signals every process of a job (SLURM's scancel and preemption do) reaches
    the decoding workers too: they leave the stop to the training loop, which checkpoints and exits
    with 130, instead of dying and taking the run down with a loader error."""
    run = tmp_path / "run"
    argv = ["-m", "vggnet", *train_args(synth, run)]
    argv[argv.index("--workers") + 1] = "2"
    process = start(argv)
    wait_for_checkpoint(run, [process], at=(0, 2))  # the workers are decoding the epoch
    os.killpg(process.pid, signal.SIGTERM)
    rc, err = finish(process, timeout=60)
    assert rc == 130 and "interrupted: SIGTERM: checkpoint written" in err, err[-3000:]
    assert "vggnet train: error" not in err and position(run) >= (0, 2)
    rc, err = finish(start(argv), timeout=300)  # the requeued job finishes from there
    assert rc == 0 and (run / "final.safetensors").exists(), err[-3000:]
