"""Process-group setup for synchronous data parallelism (§3.3) under ``torchrun``: NCCL on GPUs,
gloo on CPU. One process per device; only rank 0 writes files.

A process that is killed closes its connections, so the others' next collective fails at once; one
that hangs, or a machine that vanishes, is given up on after the collective timeout. Either way
the survivors stop, and a roll call through the rendezvous store names the ranks that are gone."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import VGGError
from ..runtime.device import resolve_device


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    store: object = None  # the rendezvous store, kept for the roll call after a failure

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(tensor)
        return tensor

    def broadcast_object(self, obj):
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def world_size() -> int:
    """The number of processes torchrun (or srun, or any launcher setting the environment) started."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str = "auto", timeout_minutes: float = 10.0) -> Dist:
    """This process's place in the group (from torchrun's environment) and its device: with
    several processes on CUDA, process ``LOCAL_RANK`` takes GPU ``LOCAL_RANK``. A collective
    that waits longer than `timeout_minutes` for another process fails."""
    world = world_size()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device if world == 1 else device.split(":")[0], local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    store = None
    if world > 1 and not dist.is_initialized():
        cuda = dev.type == "cuda"
        timeout = timedelta(minutes=timeout_minutes)
        store = rendezvous_store(rank, world, timeout)
        dist.init_process_group(
            "nccl" if cuda else "gloo",
            device_id=dev if cuda else None,
            timeout=timeout,
            store=store,
            rank=rank,
            world_size=world,
        )
    return Dist(rank, world, local, dev, store)


def rendezvous_store(rank: int, world: int, timeout: timedelta):
    """The store the processes meet in, as ``env://`` makes it (torchrun's own, or one that rank 0
    serves), but with a name space per torchrun restart: torchrun keeps its store across restarts,
    and a restarted process could otherwise read the address of the one it replaces, and fail."""
    addr, port = store_address()
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(addr, port, world, is_master=rank == 0 and not agent, timeout=timeout)
    return dist.PrefixStore(f"vggnet/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/", store)


def store_address() -> tuple[str, int]:
    """(MASTER_ADDR, MASTER_PORT): where the rendezvous store listens."""
    try:
        return os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    except (KeyError, ValueError):
        raise VGGError(
            f"WORLD_SIZE is {world_size()} but MASTER_ADDR/MASTER_PORT are not set: start the "
            f"processes with torchrun (or set RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)"
        ) from None


def peer_failure(d: Dist, e: BaseException) -> bool:
    """Whether `e` is a collective that failed: another process is gone, or did not answer in time."""
    text = str(e).lower()
    return (
        d.enabled
        and isinstance(e, RuntimeError)
        and (isinstance(e, dist.DistError) or "gloo" in text or "nccl" in text)
    )


ROLL_CALL_SECONDS = 3.0  # how long survivors wait for one another to answer


def lost_ranks(d: Dist) -> list[int] | None:
    """After a failed collective: the ranks that do not answer a roll call through the rendezvous
    store (None when the store is gone too: it lived with rank 0, or on the machine that stopped).
    The process group is torn down first, so that its closed connections tell every survivor at
    once and each of them answers within the call."""
    teardown(d)
    key = "vggnet/alive/"
    try:  # a store that is gone is found out here, quietly (the store's client logs its failures at length)
        socket.create_connection(store_address(), timeout=ROLL_CALL_SECONDS).close()
    except OSError:
        return None
    try:
        d.store.set_timeout(timedelta(seconds=ROLL_CALL_SECONDS))
        d.store.set(key + str(d.rank), "1")
        deadline = time.monotonic() + ROLL_CALL_SECONDS
        while True:
            missing = [r for r in range(d.world_size) if not d.store.check([key + str(r)])]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.1)
    except RuntimeError:  # the store's own connection failed (DistError is a RuntimeError)
        return None


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
