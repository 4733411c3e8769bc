"""Which device made which part of a resumable run.

A long online run may start on this CPU, go on on a lent GPU and finish on the CPU again (each
resume may pass another `--device`). Its wall-clock and its speed only mean something next to
the hardware that made them, so the checkpoint keeps one *leg* per stretch of environment steps
made on one device, and the summary names them all instead of only the last one.

A leg is a plain dict (it is stored in a weights_only checkpoint):
    {"device": str | None, "from_env_steps": int, "to_env_steps": int, "wall_seconds": float}
`device` is `worldmodel.device.describe` of the device, or None for steps made before legs were
recorded (a checkpoint written by an older version).
"""
from __future__ import annotations

from typing import Any

Leg = dict[str, Any]
UNRECORDED = "device not recorded"


def legs_so_far(past: list[Leg], device: str, from_env_steps: int, to_env_steps: int,
                wall_seconds: float) -> list[Leg]:
    """`past` (the legs loaded from the checkpoint) with the current leg added: merged into the
    last one when it ran on the same device and ends where this one starts."""
    current = {"device": device, "from_env_steps": int(from_env_steps), "to_env_steps": int(to_env_steps),
               "wall_seconds": float(wall_seconds)}
    if past and past[-1]["device"] == device and past[-1]["to_env_steps"] == from_env_steps:
        last = past[-1]
        merged = {**current, "from_env_steps": last["from_env_steps"],
                  "wall_seconds": last["wall_seconds"] + current["wall_seconds"]}
        return [*past[:-1], merged]
    return [*past, current]


def legs_before_recording(env_steps: int, wall_seconds: float) -> list[Leg]:
    """The legs of a checkpoint written before legs were recorded: one of unknown device."""
    if env_steps <= 0:
        return []
    return [{"device": None, "from_env_steps": 0, "to_env_steps": int(env_steps),
             "wall_seconds": float(wall_seconds)}]


def describe_legs(legs: list[Leg]) -> str:
    """One line for tables: the device alone when one made the whole run, else each device with
    its env-step range, e.g. "CPU x86_64, 2 threads (0-42k); NVIDIA H100 (42k-62k); ..."."""
    if not legs:
        return UNRECORDED
    if len(legs) == 1:
        return legs[0]["device"] or UNRECORDED
    return "; ".join(f"{leg['device'] or UNRECORDED} ({_steps(leg['from_env_steps'])}-"
                     f"{_steps(leg['to_env_steps'])})" for leg in legs)


def _steps(n: int) -> str:
    return f"{n / 1000:g}k" if n >= 1000 else str(n)
