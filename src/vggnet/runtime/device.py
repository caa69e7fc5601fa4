"""One device policy for training and evaluation: which device, whether the forward pass runs
under bf16 autocast, and the memory format of activations. Made once per run from the user's
settings (``auto`` chooses what was measured to pay on each device) and used everywhere else, so
training, validation, ``evaluate`` and feature extraction treat a device the same way."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch

from ..errors import VGGError, unknown

SWITCHES = ("auto", "on", "off")
AMP_CHOICES = SWITCHES  # bf16 autocast; "bf16" is read as "on" (the older spelling, in saved configs)


def resolve_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA if present), ``cpu``, ``cuda`` or ``cuda:N`` -> a device that exists."""
    spec = str(spec)
    if spec not in ("auto", "cpu", "cuda") and not spec.startswith("cuda:"):
        raise unknown("device", spec, ("auto", "cpu", "cuda", "cuda:N"))
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise VGGError(f"--device {spec} asked for, but this PyTorch has no usable CUDA device")
    if spec.startswith("cuda:"):
        try:
            index = int(spec.split(":", 1)[1])
        except ValueError:
            raise VGGError(f"device {spec!r}: expected cuda:N with N an integer") from None
    else:
        index = local_rank
    if not 0 <= index < torch.cuda.device_count():
        raise VGGError(f"CUDA device {index} asked for, but there are {torch.cuda.device_count()}")
    return torch.device("cuda", index)


@dataclass(frozen=True)
class DevicePolicy:
    device: torch.device
    amp: bool = False  # bf16 autocast of the forward pass
    channels_last: bool = False  # NHWC activations
    reason: str = ""  # why the precision was chosen, e.g. "auto: CPU has avx512_bf16"

    def autocast(self):
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    @property
    def precision(self) -> str:
        return "bf16 autocast" if self.amp else "fp32"

    def describe(self) -> str:
        layout = ", channels_last" if self.channels_last else ""
        return f"{self.device}, {self.precision}{layout}" + (f" ({self.reason})" if self.reason else "")


@functools.cache  # the CPU does not change while a process runs
def cpu_flags() -> frozenset[str]:
    """The CPU's own feature flags (Linux /proc/cpuinfo: x86 ``flags``, ARM ``Features``)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_native_bf16(flags: frozenset[str] | None = None) -> str | None:
    """The flag that gives this CPU native bf16 arithmetic (AMX tiles, or AVX-512 BF16 dot
    products), or None. Decided from the CPU's flags, never from its model name."""
    flags = cpu_flags() if flags is None else flags
    return next((f for f in ("amx_bf16", "avx512_bf16") if f in flags), None)


def make_policy(
    device: torch.device,
    amp: str = "auto",
    channels_last: str = "auto",
    flags: frozenset[str] | None = None,
) -> DevicePolicy:
    """The settings resolved for `device`; ``auto`` chooses what was measured to pay there
    (docs/BENCHMARKS.md):

    - channels_last: on, on CUDA and on the CPU (oneDNN's convolutions avoid reordering);
    - bf16 autocast (fp32 master weights, fp32 checkpoints): on CUDA, and on CPUs with native
      bf16 (AMX or AVX512_BF16), for training and inference alike (training measured 1.5-2.5x
      over fp32 on an AVX512_BF16 CPU); elsewhere bf16 is emulated and slower, so fp32.
    """
    amp = "on" if amp == "bf16" else amp
    if amp not in AMP_CHOICES:
        raise unknown("amp", amp, AMP_CHOICES)
    if channels_last not in SWITCHES:
        raise unknown("channels-last", channels_last, SWITCHES)
    native = cpu_native_bf16(flags) if device.type == "cpu" else None
    bf16 = amp == "on" or (amp == "auto" and (device.type == "cuda" or native is not None))
    return DevicePolicy(device, bf16, channels_last in ("on", "auto"), why(device, amp, native))


def why(device: torch.device, amp: str, native: str | None) -> str:
    """One phrase saying why the precision is what it is (written to the run's log and metadata)."""
    if amp != "auto":
        return f"--amp {amp}"
    if device.type == "cuda":
        return "auto: CUDA"
    return (
        f"auto: CPU has {native}" if native else "auto: CPU has no native bf16 (no amx_bf16/avx512_bf16 flag)"
    )


def configure_backends(policy: DevicePolicy, deterministic: bool = False) -> None:
    """Process-wide switches that belong to the policy: cuDNN autotuning and TF32 on CUDA;
    deterministic algorithms when asked."""
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if policy.device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
