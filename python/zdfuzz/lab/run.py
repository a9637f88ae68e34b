"""One scenario on one kernel: predict, boot, observe, compare, save."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zdfuzz.lab import guest, kernels
from zdfuzz.lab.cache import atomic_write, cache_dir
from zdfuzz.lab.conformance import Row, compare
from zdfuzz.lab.console import Observation, observe
from zdfuzz.lab.errors import LabError, ScenarioError
from zdfuzz.lab.kernels import Kernel
from zdfuzz.lab.predict import Prediction, predict
from zdfuzz.lab.scenario import Scenario
from zdfuzz.lab.setups import SETUPS, Setup, slow_device

SCHEMA = "zdfuzz.lab.result/1"


@dataclass
class Result:
    scenario: Scenario
    kernel: Kernel
    row: Row
    prediction: Prediction | None
    observation: Observation | None
    run: guest.GuestRun | None
    saved: Path | None = None

    def to_json(self, full: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": SCHEMA,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "kernel": {
                "name": self.kernel.name,
                "release": self.kernel.release,
                "source": self.kernel.source,
                "package_version": self.kernel.meta.get("version", ""),
            },
            **self.row.to_json(),
        }
        if self.run is not None:
            d["guest"] = {
                "status": self.run.status,
                "message": self.run.message,
                "accel": self.run.accel,
                "seconds": round(self.run.seconds, 1),
                "boot_seconds": round(self.run.boot_seconds, 1),
            }
        if self.prediction is not None:
            d["prediction"] = self.prediction.to_json()
            d["model_program"] = self.prediction.program
        if full and self.run is not None:
            d["agent_records"] = self.run.records
            d["console"] = self.run.console
        return d


def setup_of(sc: Scenario) -> Setup:
    """The scenario's set-up, with the slow device added if it asks for one."""
    try:
        setup = SETUPS[sc.setup]
    except KeyError:
        raise ScenarioError(sc.path, 0, f"unknown setup {sc.setup!r} (known: {', '.join(SETUPS)})") from None
    if sc.slowdev_ms is not None:
        mods, cmds = slow_device(sc.slowdev_ms)
        setup = Setup(
            setup.name,
            setup.doc + f"; /dev/dm-0 reads take {sc.slowdev_ms} ms",
            setup.modules + mods,
            setup.commands + cmds,
            setup.needs + ["CONFIG_BLK_DEV_LOOP", "CONFIG_BLK_DEV_DM", "CONFIG_DM_DELAY"],
            setup.pmem,
            setup.qemu,
            setup.disks,
        )
    return setup


def agent_scenario(sc: Scenario, setup: Setup, image: guest.Image, accel: str) -> dict[str, Any]:
    # Emulation (TCG) runs a guest ~20-50x slower than hardware: give a step
    # longer before it counts as blocked.
    default_timeout = sc.timeout or (8.0 if accel == "tcg" else 3.0)
    params = dict(sc.modules)
    params.setdefault("loop", "max_loop=1")
    return {
        "name": sc.name,
        "step_timeout_ms": int(default_timeout * 1000),
        "settle_ms": 1500 if accel == "tcg" else 500,
        "final_wait_ms": int(default_timeout * 1000),
        "modules": [{"name": m, "params": params.get(m, "")} for m in image.modules],
        "setup": [{"argv": argv} for argv, _ in setup.commands],
        "actors": sc.actors,
        "steps": [
            {"actor": s.runner, "op": s.op, "args": s.args}
            | ({"timeout_ms": int(s.timeout * 1000)} if s.timeout is not None else {})
            | ({"background": True} if s.background else {})
            for s in sc.steps
        ],
    }


def skip_reason(sc: Scenario, kernel: Kernel) -> str | None:
    """Why the scenario cannot run on this kernel (config, version), or None."""
    setup = setup_of(sc)
    missing = kernel.missing(setup.needs + sc.needs)
    if missing:
        return f"kernel {kernel.release} lacks {', '.join(missing)} (its .config)"
    if sc.min_kernel and kernels.parse_release(kernel.release) < sc.min_kernel:
        return f"needs kernel >= {sc.min_kernel[0]}.{sc.min_kernel[1]}"
    return None


def run_scenario(
    sc: Scenario,
    kernel: Kernel,
    accel: guest.Accel,
    rules: str | None = None,
    progress: Callable[[str], None] | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    save: bool = True,
    idle_timeout: float = 90.0,
) -> Result:
    preset = rules or kernel.preset
    skip = skip_reason(sc, kernel)
    if skip:
        row = Row(sc.name, sc.title, kernel.release, preset, "n/a", "-", "not run", reasons=[skip])
        return Result(sc, kernel, row, None, None, None)
    pred = predict(sc, preset)
    setup = setup_of(sc)
    image = guest.build_image(kernel, setup, [m for m, _ in sc.modules], progress)
    if progress:
        progress(f"booting {kernel.release} ({accel.name})")
    spec = agent_scenario(sc, setup, image, accel.name)
    run = guest.run_guest(
        kernel,
        image,
        spec,
        accel,
        on_record=on_record,
        cmdline_extra=setup.cmdline,
        setup=setup,
        idle_timeout=idle_timeout,
        total_timeout=120 + 4 * len(sc.steps) * spec["step_timeout_ms"] / 1000,
    )
    obs = observe(run.records, len(sc.steps), run.console)
    row = compare(sc, pred, obs, run.kernel_release or kernel.release, run.status, run.message)
    result = Result(sc, kernel, row, pred, obs, run)
    if save:
        result.saved = save_result(result)
    return result


def results_dir() -> Path:
    return cache_dir() / "results"


def save_result(result: Result) -> Path:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    release = re.sub(r"[^\w.+-]", "_", result.kernel.release)
    path = results_dir() / release / f"{stamp}-{result.scenario.name}.json"
    atomic_write(path, json.dumps(result.to_json(full=True), indent=1).encode())
    return path


def require_scenarios(paths: list[Path]) -> list[Scenario]:
    from zdfuzz.lab.scenario import load

    out = [load(p) for p in paths]
    names = [s.name for s in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise LabError(f"two scenarios are named {', '.join(sorted(dup))}")
    return out
