"""One device policy for training and evaluation: which device, whether the forward pass runs
under bf16 autocast, and the memory format of activations. Made once per run from the user's
settings (``auto`` chooses what was measured to pay on each device) and used everywhere else, so
training, validation, ``evaluate`` and feature extraction treat a device the same way."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..errors import VGGError, unknown

SWITCHES = ("auto", "on", "off")
AMP_CHOICES = ("auto", "bf16", "off")


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

    def autocast(self):
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def describe(self) -> str:
        return f"{self.device}" + (", bf16" if self.amp else "") + (", channels_last" if self.channels_last else "")


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (bf16 matrix units, Sapphire Rapids and later)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe and probe())
    except Exception:
        return False


def make_policy(device: torch.device, amp: str = "auto", channels_last: str = "auto",
                training: bool = False) -> DevicePolicy:
    """The settings resolved for `device`; ``auto`` chooses what was measured to pay there
    (docs/BENCHMARKS.md):

    - channels_last: on, on CUDA and on the CPU (oneDNN's convolutions avoid reordering);
    - bf16 autocast: on CUDA; on the CPU for inference only, and only where the CPU has AMX
      bf16 units (measured 2.7x for dense evaluation, 3.9x for centre crops over fp32 there; on
      other CPUs bf16 is slower). CPU training stays fp32 unless asked (``--amp bf16``): its
      results then do not depend on which CPU ran them.
    """
    if amp not in AMP_CHOICES:
        raise unknown("amp", amp, AMP_CHOICES)
    if channels_last not in SWITCHES:
        raise unknown("channels-last", channels_last, SWITCHES)
    cuda = device.type == "cuda"
    auto_bf16 = cuda or (device.type == "cpu" and not training and cpu_has_amx())
    return DevicePolicy(device, amp == "bf16" or (amp == "auto" and auto_bf16), channels_last in ("on", "auto"))


def configure_backends(policy: DevicePolicy, deterministic: bool = False) -> None:
    """Process-wide switches that belong to the policy: cuDNN autotuning and TF32 on CUDA;
    deterministic algorithms when asked."""
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if policy.device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
