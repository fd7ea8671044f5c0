"""The ``meshctl`` command line.

Exit codes: 0 success; 1 failure at run time (e.g. babeld unreachable);
2 bad usage or bad config/topology file; 3 lab could not be built or removed;
4 needs root.  Errors are one line on stderr (several for a config with
several problems), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Sequence

from meshctl import __version__
from meshctl.babel.endpoint import DEFAULT_PORT
from meshctl.babel.errors import BabelError
from meshctl.config import DEFAULT_CONFIG
from meshctl.errors import ConfigError, MeshctlError
from meshctl.listen import DEFAULT_METRICS, parse_listen
from meshctl.node.logs import FORMATS as LOG_FORMATS
from meshctl.node.logs import REDACTOR
from meshctl.node.logs import setup as setup_logging
from meshctl.topology.export import FORMATS, render, render_mesh
from meshctl.topology.snapshot import fetch_model

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

log = logging.getLogger("meshctl")


def _daemon_socket(args: argparse.Namespace) -> str:
    """The control socket named by --socket, else by --config, else the default."""
    from meshctl.config import DEFAULT_CONTROL_SOCKET, load_config

    if args.socket:
        return args.socket
    return load_config(args.config).control_socket if args.config else DEFAULT_CONTROL_SOCKET


def _mesh(args: argparse.Namespace) -> dict:
    from meshctl.node.sockets import query

    return asyncio.run(query(_daemon_socket(args), "mesh", args.timeout))


def cmd_topology_dump(args: argparse.Namespace) -> int:
    if args.mesh:
        sys.stdout.write(render_mesh(_mesh(args), args.format))
        return EXIT_OK
    model = asyncio.run(fetch_model(args.babel, args.timeout))
    sys.stdout.write(render(model, args.format, _served(args)))
    return EXIT_OK


def _served(args: argparse.Namespace) -> list[str]:
    """With --config: the addresses this node announces for others, which are not its own (NetJSON local_addresses)."""
    from meshctl.config import load_config
    from meshctl.node.meshmap import served_addresses

    return served_addresses(load_config(args.config)) if args.config else []


def cmd_topology_render(args: argparse.Namespace) -> int:
    from meshctl.topology.export import mesh_to_netjson, netjson_to_dot, to_netjson
    from meshctl.topology.html import mesh_page
    from meshctl.topology.render import IMAGE_FORMATS, render_dot

    fmt = args.format or (args.output.rsplit(".", 1)[-1].lower() if args.output and "." in args.output else "svg")
    if fmt not in (*IMAGE_FORMATS, "html"):
        raise ConfigError(f"cannot draw {fmt!r}: give --format svg, png or html", field="--format")
    if args.mesh:
        graph = mesh_to_netjson(_mesh(args))
    else:
        graph = to_netjson(asyncio.run(fetch_model(args.babel, args.timeout)), _served(args))
    image = mesh_page(graph).encode() if fmt == "html" else render_dot(netjson_to_dot(graph), fmt)
    if args.output in (None, "-"):
        sys.stdout.buffer.write(image)
    else:
        with open(args.output, "wb") as f:
            f.write(image)
        log.info("wrote %s (%d bytes)", args.output, len(image))
    return EXIT_OK


def _lab(args: argparse.Namespace):  # noqa: ANN202
    from meshctl.lab.plan import make_plan
    from meshctl.lab.runner import Lab
    from meshctl.lab.spec import load_lab

    spec = load_lab(args.file)
    progress = (lambda line: None) if args.json or args.quiet else (lambda line: print(line, flush=True))
    return Lab(make_plan(spec, args.tag), progress)


def cmd_lab_up(args: argparse.Namespace) -> int:
    lab = _lab(args)
    lab.progress(f"bringing up lab {lab.plan.name!r} (tag {lab.plan.tag}, {len(lab.plan.nodes)} nodes)")
    state = lab.up(keep_on_failure=args.keep_on_failure)
    if args.json:
        print(json.dumps(lab.status(), indent=2))
    else:
        lab.progress(f"lab {state.name!r} is up; state in {lab.state_path}")
        lab.progress(f"inspect a node: meshctl topology dump --babel {state.nodes[lab.plan.nodes[0].name]['babel']}")
    return EXIT_OK


def cmd_lab_down(args: argparse.Namespace) -> int:
    lab = _lab(args)
    removed = lab.down()
    if args.json:
        print(json.dumps({"name": lab.plan.name, "tag": lab.plan.tag, "removed": removed}, indent=2))
    else:
        for line in removed:
            lab.progress(line)
        lab.progress(f"lab {lab.plan.name!r} is down" if removed else f"lab {lab.plan.name!r} was not up")
    return EXIT_OK


def cmd_lab_status(args: argparse.Namespace) -> int:
    lab = _lab(args)
    status = lab.status()
    if args.json:
        print(json.dumps(status, indent=2))
        return EXIT_OK
    print(f"lab {status['name']} (tag {status['tag']}): {status['status']}")
    for name, node in status.get("nodes", {}).items():
        print(f"  {name:10} netns {node['namespace']:16} {node['mesh4']:12} babel {node['babel']}")
    dead = [p for p in status.get("processes", []) if not p["alive"]]
    for p in dead:
        print(f"  DEAD: {p['what']} on {p['node']} (pid {p['pid']})")
    return EXIT_OK if not dead else EXIT_FAILURE


def cmd_check_config(args: argparse.Namespace) -> int:
    """Every problem on its own line (file:line: field: message) on stdout; exit 2 if any."""
    from meshctl.config import load_config

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        if args.json:
            problems = [{"field": p.field or None, "line": p.line, "message": p.message} for p in exc.problems]
            print(json.dumps({"file": args.file, "ok": False, "problems": problems}, indent=2))
        else:
            for p in exc.problems:
                print(p)
            print(f"{args.file}: {len(exc.problems)} problem(s); nothing was touched")
        return exc.exit_code
    if args.json:
        print(json.dumps({"file": args.file, "ok": True, "node": config.name, "problems": []}))
    else:
        gateway = "yes" if config.gateway else "no"
        print(f"{args.file}: ok (node {config.name}, {len(config.uplinks)} uplink(s), gateway: {gateway})")
    return EXIT_OK


def cmd_daemon(args: argparse.Namespace) -> int:
    import signal

    from meshctl.config import load_config
    from meshctl.node.daemon import Daemon

    config = load_config(args.config)  # refuses a broken config before touching anything
    for key in config.private_keys():
        REDACTOR.add(key)
    if args.metrics:
        try:
            parse_listen(args.metrics)
        except ValueError as exc:
            raise ConfigError(str(exc), field="--metrics") from None

    async def run() -> None:
        daemon = Daemon(config, metrics=args.metrics)
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        loop.add_signal_handler(signal.SIGHUP, daemon.reload)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.warning("meshctl daemon for %s stopped", config.name)

    asyncio.run(run())
    return EXIT_OK


def _format_status(status: dict) -> str:
    lines = [f"node {status['node']}: babeld {'synced' if status['babel']['synced'] else 'NOT SYNCED'}"
             f" ({status['babel']['address']}, {status['babel']['reconnects']} reconnects)"]
    for up in status["uplinks"]:
        lines.append(f"uplink {up['interface']}: chosen {up['chosen'] or 'none'}, steering {', '.join(up['steer'])},"
                     f" {up['switches']} switch(es), device {up['device']}")
        for c in up["candidates"]:
            mark = "*" if c["chosen"] else " "
            age = f"{c['handshake_age_s']:.0f}s" if c["handshake_age_s"] is not None else "never"
            metric = c["metric"] if c["metric"] is not None else "unreachable"
            rtt = f"{c['probe_rtt_ms']:.1f}ms" if c["probe_rtt_ms"] is not None else "-"
            lines.append(f"  {mark} {c['name']:10} metric {metric!s:>11}  handshake {age:>6}  {c['state']:11} probe rtt {rtt}")
        last = up["last_switch"]
        if last:
            lines.append(f"  last switch {last['ago_s']}s ago: {last['old'] or 'none'} -> {last['new']}, {last['reason']}")
        r = up["reaction_ms"]
        if r["count"]:
            lines.append(f"  reaction (trigger -> WireGuard write): median {r['median']} ms, p99 {r['p99']} ms over {r['count']}")
    gw = status.get("gateway")
    if gw:
        served = ", ".join(f"{c['name']}{' (announced)' if c['announced'] else ''}" for c in gw["clients"])
        lines.append(f"gateway {gw['interface']}: device {gw['device']}; clients: {served}")
    gossip = status.get("gossip")
    if gossip:
        bad = ", ".join(f"{k} {v}" for k, v in sorted(gossip["rejected"].items()) if k not in ("duplicate", "own"))
        lines.append(f"gossip: {gossip['origins']} other node(s) described, {gossip['neighbours']} neighbour(s), "
                     f"{gossip['accepted']} accepted" + (f"; rejected: {bad}" if bad else ""))
    rejected = status["counters"]["rejected_datagrams"]
    if rejected:
        lines.append("rejected datagrams: " + ", ".join(f"{k} {v}" for k, v in sorted(rejected.items())))
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    from meshctl.node.sockets import query_status

    status = asyncio.run(query_status(_daemon_socket(args)))
    print(json.dumps(status, indent=2) if args.json else _format_status(status))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshctl",
        description="Babel-over-WireGuard mesh controller.",
        epilog="Exit codes: 0 ok, 1 run-time failure, 2 bad usage or config, 3 lab failure, 4 needs root.",
    )
    parser.add_argument("--version", action="version", version=f"meshctl {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeatable)")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="text for people, json (one object per line) for log shippers (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    topo = sub.add_parser("topology", help="show the mesh as babeld sees it")
    topo_sub = topo.add_subparsers(dest="topology_command", metavar="SUBCOMMAND", required=True)
    dump = topo_sub.add_parser(
        "dump",
        help="print this node's view of the mesh",
        description="Connect to babeld's local interface, take one dump, print it.",
    )
    dump.add_argument("--format", choices=FORMATS, default="json",
                      help="json (meshctl.topology/1), netjson (NetworkGraph), dot or graphml (default: %(default)s)")
    draw = topo_sub.add_parser(
        "render",
        help="draw this node's view of the mesh (SVG or PNG, with Graphviz)",
        description="Connect to babeld's local interface, take one dump, and draw it with Graphviz's dot.",
    )
    draw.add_argument("-o", "--output", metavar="FILE", help="image file (default: standard output)")
    draw.add_argument("--format", choices=("svg", "png", "html"),
                      help="svg, png, or html: a self-contained interactive page (default: from FILE's suffix, else svg)")
    draw.set_defaults(func=cmd_topology_render)
    for p in (dump, draw):
        p.add_argument(
            "--babel",
            default=f"tcp:[::1]:{DEFAULT_PORT}",
            metavar="ADDR",
            help="babeld's local interface: tcp:[::1]:PORT or unix:PATH (default: %(default)s)",
        )
        p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for babeld (default: %(default)s)")
        p.add_argument("--mesh", action="store_true",
                       help="the whole mesh, from the running daemon's gossip, instead of this babeld's view")
        p.add_argument("--socket", help="with --mesh: the daemon's control socket (default: from --config, else "
                       "/run/meshctl/meshctl.sock)")
        p.add_argument("--config", help="node config: with --mesh, where the control socket is; without, which "
                       "addresses this node announces for its clients (left out of NetJSON's local_addresses)")
    dump.set_defaults(func=cmd_topology_dump)

    daemon = sub.add_parser(
        "daemon",
        help="run the controller for this node",
        description="Follow babeld, keep every gateway's WireGuard session warm, and move the steered "
        "prefixes to the best gateway in one WireGuard write.",
    )
    daemon.add_argument("--config", default=DEFAULT_CONFIG, help="node config (default: %(default)s)")
    daemon.add_argument(
        "--metrics",
        metavar="ADDR:PORT",
        help=f"serve Prometheus metrics at http://ADDR:PORT/metrics, e.g. {DEFAULT_METRICS} "
        "(default: the config's node.metrics, else off)",
    )
    daemon.set_defaults(func=cmd_daemon)

    status = sub.add_parser("status", help="ask the running daemon what it chose and why")
    status.add_argument("--socket", help="daemon control socket (default: from --config, else /run/meshctl/meshctl.sock)")
    status.add_argument("--config", help="node config to read the control socket path from")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    check = sub.add_parser(
        "check-config",
        help="validate a node config without touching anything",
        description="Validate a node config as the daemon does at start, without touching anything. Prints every "
        "problem as FILE:LINE: FIELD: MESSAGE; exits 0 if the config is good, 2 if not.",
    )
    check.add_argument("file", metavar="FILE")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=cmd_check_config)

    lab = sub.add_parser("lab", help="run a topology from topologies/ in network namespaces (root)")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="SUBCOMMAND", required=True)
    for name, func, text in (
        ("up", cmd_lab_up, "build the mesh: namespaces, veths, wireguard-go tunnels, babeld"),
        ("down", cmd_lab_down, "remove everything the lab made (also after a failed up)"),
        ("status", cmd_lab_status, "show the lab's nodes and whether its processes live"),
    ):
        p = lab_sub.add_parser(name, help=text, description=text)
        p.add_argument("file", metavar="FILE", help="topology file, e.g. topologies/seed.toml")
        p.add_argument("--tag", help="name prefix (1-6 chars) overriding the file's; run two copies side by side")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
        if name == "up":
            p.add_argument("--keep-on-failure", action="store_true", help="leave a failed lab in place to debug it")
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    daemon = args.command == "daemon"
    default = logging.INFO if daemon else logging.WARNING
    level = min(max(default - 10 * args.verbose, logging.DEBUG), logging.CRITICAL)
    setup_logging(level, args.log_format, daemon)
    try:
        return int(args.func(args))
    except MeshctlError as exc:
        print(f"meshctl: {exc}", file=sys.stderr)
        return exc.exit_code
    except BabelError as exc:
        print(f"meshctl: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("meshctl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
