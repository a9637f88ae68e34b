"""The ``zdfuzz`` command line.

Until the fuzzer lands, the main job is ``zdfuzz demo``: it walks a
``pgmap->ref`` through the lifecycle ``memunmap_pages`` drives (users on
several CPUs, kill, grace period, last put, release) and shows the counters.
"""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

import zdfuzz


@click.group()
@click.version_option(zdfuzz.__version__, prog_name="zdfuzz")
def main() -> None:
    """Fuzz and model-check Linux ZONE_DEVICE reference counting."""


@main.command()
@click.option("--cpus", default=4, show_default=True, help="CPU slots of the percpu_ref.")
def demo(cpus: int) -> None:
    """Walk a pgmap->ref percpu_ref through kill, grace period and release."""
    console = Console()
    if cpus < 2:
        raise click.BadParameter("the demo needs at least 2 CPUs", param_hint="--cpus")
    ref = zdfuzz.PercpuRef(cpus=cpus)
    table = Table(title="pgmap->ref: a percpu_ref through memunmap_pages")
    for col in ("step", "kernel call", "count", "mode", "dying", "released"):
        table.add_column(col)

    def row(step: str, call: str) -> None:
        table.add_row(step, call, str(ref.count()), ref.mode, str(ref.is_dying()), str(ref.released))

    row("memremap_pages", "percpu_ref_init(ref, release, 0)")
    ref.get(0)
    row("GUP on cpu 0", "percpu_ref_get (cpu 0 counter)")
    ref.get(1)
    row("GUP on cpu 1", "percpu_ref_get (cpu 1 counter)")
    ref.put(0)
    row("cpu 0 done", "percpu_ref_put (cpu 0 counter)")
    ref.kill()
    row("memunmap_pages", "percpu_ref_kill: DEAD, switch to atomic, put initial ref")
    ok = ref.tryget_live(0)
    row("new GUP on cpu 0", f"percpu_ref_tryget_live -> {ok}")
    ref.grace_period()
    row("RCU grace period", "fold per-CPU counts into the atomic counter")
    released = ref.put(1)
    row("cpu 1 done", f"percpu_ref_put -> release ran: {released}")
    console.print(table)
    events = ref.events()
    if events:
        console.print(f"[red]misuse events: {[e.name for e in events]}[/red]")
        raise SystemExit(1)
    console.print(
        "release ran exactly once, after the last reference was dropped: "
        "memunmap_pages' wait_for_completion() returns now."
    )


if __name__ == "__main__":
    main()
