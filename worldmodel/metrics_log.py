"""Training metrics on disk: `metrics.jsonl`, one JSON object a line, plus TensorBoard if present.

Each record holds `step`, `frames_per_s`, `wall_time` (seconds of training so far, summed over
resumes) and every loss term, averaged over the steps since the previous record.

The file is append-only: each record is one `write` of one line followed by a flush, so a crash
can at worst leave a torn *last* line, which `read_metrics` drops. On resume the file is rewritten
atomically to the records at or before the checkpoint's step (`MetricsLog(..., keep_until=step)`),
so the log of a resumed run equals that of an uninterrupted one, plus one record per stop: the
partial window logged at the exit (its sums stay in the checkpoint, so the next record still
averages the whole window, as an uninterrupted run's does).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

from worldmodel.atomic import atomic_write_bytes

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl (a run folder or the file itself); a torn last line is
    dropped, a bad line elsewhere is an error naming the file and line."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    lines = path.read_text().splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:  # torn by a crash mid-write: the record is lost, not the file
                break
            raise ValueError(f"{path}: line {i + 1} is not JSON ({e}); the metrics log is damaged") from e
    return records


def _json_number(x: Any) -> Any:
    """NaN/inf are not JSON; write them as strings so the file stays parseable."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


class MetricsLog:
    """Writer of a run's metrics (rank 0 only; other ranks pass `enabled=False`)."""

    def __init__(self, run_dir: str | Path, *, enabled: bool = True, keep_until: int | None = None):
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self._file = None
        self._tb = None
        if not enabled:
            return
        if keep_until is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if int(r["step"]) <= keep_until]
            atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        elif keep_until is None and self.path.exists():
            self.path.unlink()  # a fresh run starts a fresh log
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")
        try:  # optional: TensorBoard needs the `tensorboard` package, which is not a dependency
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events at or after it: the kept records run up to keep_until itself
            self._tb = SummaryWriter(log_dir=str(self.path.parent / "tensorboard"),
                                     purge_step=None if keep_until is None else keep_until + 1)
        except ImportError:
            self._tb = None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (must hold an int `step`)."""
        if not self.enabled:
            return
        record = {k: _json_number(v) for k, v in record.items()}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc: Iterable[Any]) -> None:
        self.close()


class MetricsWindow:
    """Running sums of the terms since the last metrics record (checkpointed, so a resumed run
    logs the same averages as an uninterrupted one)."""

    def __init__(self, state: dict[str, Any] | None = None):
        state = state or {"sums": {}, "count": 0, "seconds": 0.0}
        self.sums: dict[str, float] = dict(state["sums"])
        self.count, self.seconds = int(state["count"]), float(state["seconds"])

    def add(self, terms: dict[str, float], seconds: float) -> None:
        for name, v in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + v
        self.count += 1
        self.seconds += seconds

    def record(self, step: int, frames_per_update: int, wall_time: float) -> dict[str, Any]:
        """The record of this window (means of the terms, frames/s over update time)."""
        fps = frames_per_update * self.count / max(self.seconds, 1e-12)
        return {"step": step, "frames_per_s": fps, "wall_time": wall_time,
                **{name: s / self.count for name, s in self.sums.items()}}

    def state(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "count": self.count, "seconds": self.seconds}
