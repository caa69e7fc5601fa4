"""What every layer above needs to run a net: the device policy (device, bf16 autocast, memory
format) and the one path from pixels to a module's outputs."""
