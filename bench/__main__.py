"""Run every benchmark and print one table each."""

from __future__ import annotations

import os
import sys

from bench import gossip_bench, model_bench


def table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


FOOTPRINT_TABLES = ("measure", "split-only ms", "meshctl ms", "ratio", "split-only peak MiB", "meshctl peak MiB")
FOOTPRINT_LABS = ("node", "daemon RSS MiB", "floor MiB", "over floor", "babeld RSS MiB", "daemon CPU %",
                  "babeld CPU %", "daemon/babeld", "floor imports (besides asyncio)")


def footprint_tables() -> None:
    from bench import footprint_bench

    table("footprint, big tables: split-only baseline against meshctl, min/median/max of 3 runs "
          "(dump -> model: CPU ms in this process; topology dump and sync: wall ms of a process)",
          FOOTPRINT_TABLES, footprint_bench.run_tables())


def footprint_labs() -> None:
    from bench import footprint_bench

    table("footprint in the labs: each daemon beside babeld on its node and beside its floor (a bare interpreter "
          "importing what that node's config uses); idle CPU over 20 s; then imports and exec to synced "
          "(min/median/max ms)", FOOTPRINT_LABS, footprint_bench.run_labs())


def reaction() -> None:
    from bench import failover_bench

    table("controller reaction in the seed lab (hold 0, gw2's link cost toggled)", ("measure", "median", "p99"),
          failover_bench.reaction_rows())


def main() -> None:
    sections = sys.argv[1:]
    if sections:  # python -m bench reaction footprint_tables footprint_labs: just those
        for name in sections:
            globals()[name]()
        return
    table(
        f"parser + model: synthetic dump, {model_bench.NEIGHBOURS} neighbours, {model_bench.ROUTES} routes, "
        f"{model_bench.CHANGES} change lines",
        ("stage", "lines", "ms (best of 3)", "lines/s", "peak MiB"),
        model_bench.run(),
    )
    table(
        f"gossip: {gossip_bench.NODES}-node simulated mesh, one table takes every node's signed description",
        ("stage", "nodes", "ms (best of 3)", "peak MiB"),
        gossip_bench.run(),
    )
    footprint_tables()
    if os.geteuid() != 0:
        print("\nfail-over benchmarks skipped: they build network namespaces (run as root)", file=sys.stderr)
        return
    from bench import failover_bench

    table(
        f"fail-over, by what traffic saw: a ping every 10 ms from the client to 10.200.0.7; silence = the longest "
        f"gap between replies by their own timestamps; min / median / max over {failover_bench.RUNS} runs "
        "(faults: topologies/faults.toml; seed case: topologies/seed.toml, same run)",
        ("fault", "silence ms", "replies lost", "lost, switch back", "goal"),
        failover_bench.run(),
    )
    reaction()
    table("gossip in the 4x4 grid lab (meshctl on all 16 nodes)", ("measure", "value", ""), gossip_bench.grid_run())
    from bench import links_bench

    table(
        f"link plane: steady ping every 10 ms across a managed link, a path cut, silence by the replies' stamps "
        f"(min / median / max over {links_bench.RUNS} runs; shared machine: noisy)",
        ("scenario", "min / median / max", "runs"),
        links_bench.run(),
    )
    footprint_labs()


if __name__ == "__main__":
    main()
