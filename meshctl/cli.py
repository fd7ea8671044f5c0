"""The ``meshctl`` command line.

Exit codes: 0 success; 1 failure at run time (e.g. babeld unreachable);
2 bad usage or bad config/topology file; 3 lab could not be built or removed;
4 needs root.  Errors are one line on stderr (several for a config with
several problems), never a traceback.  A reader that stops early (``| head``)
ends the command quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from meshctl import __version__
from meshctl.babel.endpoint import DEFAULT_PORT
from meshctl.babel.errors import BabelError
from meshctl.config import DEFAULT_CONFIG, DEFAULT_CONTROL_SOCKET
from meshctl.errors import ConfigError, MeshctlError
from meshctl.listen import DEFAULT_METRICS
from meshctl.node.command import EXIT_FAILURE, cmd_daemon, daemon_command_line, guarded, log_level, start
from meshctl.node.logs import FORMATS as LOG_FORMATS
from meshctl.node.logs import setup as setup_logging

# argparse (and gettext with it) only when the parser is built: the daemon's own command line is read without it
# (see meshctl.node.command), and a router keeps what a daemon loads for months.
if TYPE_CHECKING:
    import argparse

EXIT_OK = 0
EXIT_USAGE = 2
MAX_TIMEOUT = 3600.0
DEFAULT_BABEL = f"tcp:[::1]:{DEFAULT_PORT}"
SHELLS = ("bash", "zsh")
# shtab's completion hints, spelled out so the parser needs shtab only when the scripts are generated.
FILE = {"bash": "_shtab_compgen_files", "zsh": "_files"}
TOML_FILE = {"bash": "_shtab_compgen_files", "zsh": "_files -g '*.toml'"}
# meshctl.topology.export.FORMATS, spelled out so that the parser (which the daemon builds too) does not load
# the exporters; tests/test_footprint.py checks that the two agree.
DUMP_FORMATS = ("json", "netjson", "dot", "graphml")

log = logging.getLogger("meshctl")


class _OutputClosed(Exception):
    """Whoever read standard output stopped reading (``meshctl ... | head``)."""


def _stdout_to_devnull() -> None:
    """After a failed write, send what is still buffered nowhere, so exiting does not fail a second time."""
    with contextlib.suppress(OSError, ValueError):
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)


def emit(data: str | bytes) -> None:
    """Write to standard output now; a closed pipe or a full disk becomes one clear error."""
    try:
        if isinstance(data, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(data)
            sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
        raise _OutputClosed from None
    except OSError as exc:
        _stdout_to_devnull()
        raise MeshctlError(f"cannot write to standard output: {exc.strerror}") from None


def write_file(path: str, data: bytes) -> None:
    """Write ``data`` to ``path``; a full disk or a bad path is one line naming the file."""
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise MeshctlError(f"{path}: cannot write: {exc.strerror}") from None


def seconds(text: str) -> float:
    """argparse type for --timeout: a finite number of seconds, more than 0 (``inf`` would wait forever)."""
    import argparse  # loaded by the parser calling this

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_TIMEOUT:g} seconds, not {text!r}")
    return value


def babel_address(text: str) -> str:
    """argparse type for --babel: checked here so a typo is a usage error (exit 2), not a failed connection."""
    import argparse  # loaded by the parser calling this

    from meshctl.config import parse_babel_address

    try:
        return str(parse_babel_address(text))
    except BabelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _config_path(args: argparse.Namespace) -> str | None:
    """--config, else the system's node config when there is one."""
    if args.config:
        return str(args.config)
    return DEFAULT_CONFIG if os.path.lexists(DEFAULT_CONFIG) else None


def _babel(args: argparse.Namespace) -> str:
    """babeld's address: --babel, else node.babel of the node config, else the default."""
    from meshctl.config import load_node_addresses

    if args.babel:
        return str(args.babel)
    path = _config_path(args)
    return str(load_node_addresses(path)[0]) if path else DEFAULT_BABEL


def _socket(args: argparse.Namespace) -> str:
    """The daemon's control socket: --socket, else node.control_socket of the node config, else the default."""
    from meshctl.config import load_node_addresses

    if args.socket:
        return str(args.socket)
    path = _config_path(args)
    return load_node_addresses(path)[1] if path else DEFAULT_CONTROL_SOCKET


def _mesh(args: argparse.Namespace) -> dict:
    from meshctl.node.sockets import query

    return asyncio.run(query(_socket(args), "mesh", args.timeout))


def _model(args: argparse.Namespace):  # noqa: ANN202 - a TopologyModel
    from meshctl.topology.snapshot import fetch_model  # not for the daemon: it has its own babeld client

    return asyncio.run(fetch_model(_babel(args), args.timeout))


def _answer(what: str, make: Callable[[], Any]) -> Any:
    """Format an answer from the daemon; one that lacks what we expect is an error, not a traceback."""
    try:
        return make()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MeshctlError(f"the daemon's {what} is not what this meshctl understands ({type(exc).__name__}: {exc}); "
                           "is it another version?") from None


def _dump_format(args: argparse.Namespace) -> str:
    if args.json and args.format not in (None, "json"):
        raise ConfigError(f"--json asks for JSON, --format for {args.format}: give one", field="--json")
    return str(args.format or "json")


def cmd_topology_dump(args: argparse.Namespace) -> int:
    from meshctl.topology.export import iter_render, render_mesh

    fmt = _dump_format(args)
    if args.mesh:
        mesh = _mesh(args)
        emit(_answer("mesh", lambda: render_mesh(mesh, fmt)))
    else:
        # No cycle collection in a one-shot command, which makes nothing that needs it: each pass walked the
        # whole table again while sorting and encoding made their short-lived objects (more than half of a
        # 100,000-route dump's time), and resuming it after the table arrived cost one more such pass.
        gc.disable()
        model = _model(args)
        for chunk in iter_render(model, fmt, _served(args)):
            emit(chunk)
    return EXIT_OK


def _served(args: argparse.Namespace) -> list[str]:
    """With --config: the addresses this node announces for others, which are not its own (NetJSON local_addresses)."""
    if not args.config:
        return []  # and no import of the mesh map, which loads networkx (0.1 s) for nothing
    from meshctl.config import load_config
    from meshctl.node.meshmap import served_addresses

    return served_addresses(load_config(args.config))


def cmd_topology_render(args: argparse.Namespace) -> int:
    from meshctl.topology.export import mesh_to_netjson, netjson_to_dot, to_netjson
    from meshctl.topology.html import mesh_page
    from meshctl.topology.render import IMAGE_FORMATS, render_dot

    fmt = args.format or (args.output.rsplit(".", 1)[-1].lower() if args.output and "." in args.output else "svg")
    if fmt not in (*IMAGE_FORMATS, "html"):
        raise ConfigError(f"cannot draw {fmt!r}: give --format svg, png or html", field="--format")
    to_stdout = args.output in (None, "-")
    if args.json and to_stdout:
        raise ConfigError("--json describes the file written: give -o FILE too", field="--json")
    if args.mesh:
        mesh = _mesh(args)
        graph = _answer("mesh", lambda: mesh_to_netjson(mesh))
    else:
        graph = to_netjson(_model(args), _served(args))
    image = mesh_page(graph).encode() if fmt == "html" else render_dot(netjson_to_dot(graph), fmt)
    if to_stdout:
        emit(image)
        return EXIT_OK
    write_file(args.output, image)
    if args.json:
        emit(json.dumps({"output": args.output, "format": fmt, "bytes": len(image),
                         "view": "mesh" if args.mesh else "node"}) + "\n")
    log.info("wrote %s (%d bytes)", args.output, len(image))
    return EXIT_OK


def _topology_file(text: str) -> str:
    """A topology file's path, or the name of one shipped with meshctl (``seed``, ``grid4x4``, ...)."""
    from meshctl.shipped import topology

    if os.path.exists(text) or os.sep in text or text.endswith(".toml"):
        return text
    found = topology(text)
    return str(found) if found else text


def _lab(args: argparse.Namespace):  # noqa: ANN202
    """The lab for FILE, after the checks that refuse before anything is printed."""
    from meshctl.lab.plan import make_plan
    from meshctl.lab.runner import Lab, require_root
    from meshctl.lab.spec import load_lab

    spec = load_lab(_topology_file(args.file))  # a broken file is exit 2 for anyone
    require_root()  # exit 4, before the first progress line
    quiet = args.json or args.quiet

    def progress(line: str) -> None:
        with contextlib.suppress(_OutputClosed):  # progress is for a person; a closed pipe must not fail the lab
            emit(line + "\n")

    return Lab(make_plan(spec, args.tag), (lambda line: None) if quiet else progress)


def cmd_lab_up(args: argparse.Namespace) -> int:
    lab = _lab(args)
    lab.progress(f"bringing up lab {lab.plan.name!r} (tag {lab.plan.tag}, {len(lab.plan.nodes)} nodes)")
    state = lab.up(keep_on_failure=args.keep_on_failure)
    if args.json:
        emit(json.dumps(lab.status(), indent=2) + "\n")
    else:
        lab.progress(f"lab {state.name!r} is up; state in {lab.state_path}")
        lab.progress(f"inspect a node: meshctl topology dump --babel {state.nodes[lab.plan.nodes[0].name]['babel']}")
    return EXIT_OK


def cmd_lab_down(args: argparse.Namespace) -> int:
    lab = _lab(args)
    removed = lab.down()
    if args.json:
        emit(json.dumps({"name": lab.plan.name, "tag": lab.plan.tag, "removed": removed}, indent=2) + "\n")
    else:
        for line in removed:
            lab.progress(line)
        lab.progress(f"lab {lab.plan.name!r} is down" if removed else f"lab {lab.plan.name!r} was not up")
    return EXIT_OK


def format_lab_status(status: dict, sockets: dict[str, str]) -> str:
    """``lab status`` for people: each node, then each process the lab started on it."""
    lines = [f"lab {status['name']} (tag {status['tag']}): {status['status']}"]
    processes = status.get("processes", [])
    for name, node in status.get("nodes", {}).items():
        lines.append(f"  {name:10} netns {node['namespace']:16} {node['mesh4']:12} babel {node['babel']}")
        for p in (p for p in processes if p["node"] == name):
            state = "running" if p["alive"] else "DEAD"
            extra = f"  meshctl status --socket {sockets[name]}" if p["what"] == "meshctl daemon" and name in sockets else ""
            lines.append(f"    {p['what']:24} pid {p['pid']:<8} {state}{extra}")
    for p in processes:
        if not p["alive"]:
            lines.append(f"  DEAD: {p['what']} on {p['node']} (pid {p['pid']})")
    return "\n".join(lines) + "\n"


def cmd_lab_status(args: argparse.Namespace) -> int:
    lab = _lab(args)
    status = lab.status()
    dead = [p for p in status.get("processes", []) if not p["alive"]]
    if args.json:
        emit(json.dumps(status, indent=2) + "\n")
    else:
        emit(format_lab_status(status, {n.name: n.control_socket for n in lab.plan.nodes if n.daemon}))
    return EXIT_OK if not dead else EXIT_FAILURE


def cmd_check_config(args: argparse.Namespace) -> int:
    """Every problem on its own line (file:line: field: message) on stdout; exit 2 if any."""
    from meshctl.config import load_config

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        if args.json:
            problems = [{"field": p.field or None, "line": p.line, "message": p.message} for p in exc.problems]
            emit(json.dumps({"file": args.file, "ok": False, "problems": problems}, indent=2) + "\n")
        else:
            emit("".join(f"{p}\n" for p in exc.problems)
                 + f"{args.file}: {len(exc.problems)} problem(s); nothing was touched\n")
        return exc.exit_code
    # The gossip key's public half, which every node's [[gossip.trust]] needs: no common tool derives
    # an Ed25519 public key from the base64 seed the key file holds.
    gossip = config.gossip
    if args.json:
        extra = {"gossip_public_key": gossip.key.public} if gossip else {}
        emit(json.dumps({"file": args.file, "ok": True, "node": config.name, "problems": []} | extra) + "\n")
    else:
        gateway = "yes" if config.gateway else "no"
        emit(f"{args.file}: ok (node {config.name}, {len(config.uplinks)} uplink(s), gateway: {gateway})\n")
        if gossip is not None:
            public = gossip.key.public
            listed = (config.name, public) in {(name, key.strip()) for name, key in gossip.trusted}
            emit(f"{args.file}: gossip public key of {config.name}: {public}"
                 + ("\n" if listed else " (not yet in [[gossip.trust]]: every node's list needs it, this one's too)\n"))
    return EXIT_OK


def cmd_withdraw(args: argparse.Namespace) -> int:
    """Remove every route this gateway announced for its clients (after a crash: systemd's ExecStopPost)."""
    from meshctl.config import load_config
    from meshctl.uplink.routes import ours, withdraw

    config = load_config(args.config)
    gw = config.gateway
    if gw is None:
        if args.json:
            print(json.dumps({"removed": [], "note": "not a gateway"}))
        return EXIT_OK
    protos = (gw.route_protocol, gw.standby_protocol)
    addresses = {a for c in gw.clients for a in c.addresses}

    async def run() -> list[str]:
        found = sorted({prefix for prefix, _, _, _ in await ours(protos) if prefix in addresses}, key=str)
        for prefix in found:
            await withdraw((prefix,), protos)
        return [str(p) for p in found]

    removed = asyncio.run(run())
    if args.json:
        print(json.dumps({"removed": removed}))
    elif removed:
        print(f"withdrew {', '.join(removed)}")
    return EXIT_OK


def _format_status(status: dict) -> str:
    """``meshctl status`` for people."""
    lines = [f"node {status['node']}: babeld {'synced' if status['babel']['synced'] else 'NOT SYNCED'}"
             f" ({status['babel']['address']}, {status['babel']['reconnects']} reconnects)"]
    for up in status["uplinks"]:
        lines.append(f"uplink {up['interface']}: device {up['device']}")
        families = up.get("families") or {"": {**up, "holder": up["chosen"], "switching": None, "check": None}}
        for fam, f in families.items():
            check = f.get("check")
            check_text = f", check {check['target']} {check['state']}" if check else ""
            lines.append(f"  {fam + ' ' if fam else ''}chosen {f['chosen'] or 'none'}, steering {', '.join(f['steer'])}, "
                         f"{f['switches']} switch(es){check_text}"
                         + (f", switching ({f['switching']})" if f.get("switching") else "")
                         + ("" if f.get("own_announcement", True) else ", NO own announcement in babeld (see babel/)"))
            for c in f["candidates"]:
                mark = "*" if c["chosen"] else " "
                age = f"{c['handshake_age_s']:.0f}s" if c["handshake_age_s"] is not None else "never"
                metric = c["metric"] if c["metric"] is not None else "-"
                onward = c.get("upstream_metric", "-") if c.get("upstream_metric") is not None else "-"
                path = c.get("path_metric") if c.get("path_metric") is not None else "unreachable"
                rtt = f"{c['probe_rtt_ms']:.1f}ms" if c["probe_rtt_ms"] is not None else "-"
                lines.append(f"    {mark} {c['name']:10} metric {metric!s:>5} + onward {onward!s:>5} = {path!s:>11}"
                             f"  handshake {age:>6}  "
                             f"{c['state']:12} probe rtt {rtt}" + (f"  check {c['check']}" if c.get("check") else ""))
            last = f["last_switch"]
            if last:
                lines.append(f"    last switch {last['ago_s']}s ago: {last['old'] or 'none'} -> {last['new']}, {last['reason']}")
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

    status = asyncio.run(query_status(_socket(args), args.timeout))
    emit(json.dumps(status, indent=2) + "\n" if args.json else _answer("status", lambda: _format_status(status) + "\n"))
    return EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    from meshctl.shipped import completion

    emit(completion(args.shell).read_text())
    return EXIT_OK


def _ask_daemon_options(p: argparse.ArgumentParser, timeout: float) -> None:
    """--config, --socket and --timeout of the commands that read the node config to find the daemon or babeld."""
    p.add_argument("--config", metavar="FILE", help=f"node config to take the control socket and babeld's address from "
                   f"(default: {DEFAULT_CONFIG} when it exists)").complete = TOML_FILE  # type: ignore[attr-defined]
    p.add_argument("--socket", metavar="PATH", help=f"the daemon's control socket (default: node.control_socket of the "
                   f"config, else {DEFAULT_CONTROL_SOCKET})").complete = FILE  # type: ignore[attr-defined]
    p.add_argument("--timeout", type=seconds, default=timeout, metavar="SECONDS",
                   help="how long to wait for an answer (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; the man page and the shell completions are generated from it."""
    import argparse

    from meshctl.shipped import topologies

    class Parser(argparse.ArgumentParser):
        """argparse, with usage errors on one line (exit 2) like every other error of meshctl."""

        def error(self, message: str) -> NoReturn:
            self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")

    parser = Parser(
        prog="meshctl",
        description="Babel-over-WireGuard mesh controller: fast, loss-free gateway fail-over steered by babeld's "
        "metrics, the mesh's topology for people and tools, and whole meshes in network namespaces for testing.",
        epilog="Exit codes: 0 ok, 1 run-time failure, 2 bad usage or config, 3 lab failure, 4 needs root.",
    )
    parser.add_argument("--version", action="version", version=f"meshctl {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeatable)")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="text for people, json (one object per line) for log shippers (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    topo = sub.add_parser("topology", help="show the mesh as babeld sees it",
                          description="Show the mesh: this node's view from babeld, or the whole mesh from the daemon.")
    topo_sub = topo.add_subparsers(dest="topology_command", metavar="SUBCOMMAND", required=True)
    dump = topo_sub.add_parser(
        "dump",
        help="print this node's view of the mesh",
        description="Connect to babeld's local interface, take one dump, print it (with --mesh: ask the running "
        "daemon for the whole mesh instead).",
    )
    dump.add_argument("--format", choices=DUMP_FORMATS,
                      help="json (meshctl.topology/1), netjson (NetworkGraph), dot or graphml (default: json)")
    dump.add_argument("--json", action="store_true", help="the same as --format json")
    draw = topo_sub.add_parser(
        "render",
        help="draw this node's view of the mesh (SVG or PNG, with Graphviz)",
        description="Connect to babeld's local interface, take one dump, and draw it with Graphviz's dot.",
    )
    draw.add_argument("-o", "--output", metavar="FILE", help="image file (default: standard output)"
                      ).complete = FILE  # type: ignore[attr-defined]
    draw.add_argument("--format", choices=("svg", "png", "html"),
                      help="svg, png, or html: a self-contained interactive page (default: from FILE's suffix, else svg)")
    draw.add_argument("--json", action="store_true", help="with -o FILE: print what was written, as JSON")
    draw.set_defaults(func=cmd_topology_render)
    for p in (dump, draw):
        p.add_argument("--babel", type=babel_address, metavar="ADDR",
                       help=f"babeld's local interface: tcp:[::1]:PORT or unix:PATH (default: node.babel of the "
                       f"config, else {DEFAULT_BABEL})")
        p.add_argument("--mesh", action="store_true",
                       help="the whole mesh, from the running daemon's gossip, instead of this babeld's view")
        _ask_daemon_options(p, 5.0)
    dump.set_defaults(func=cmd_topology_dump)

    daemon = sub.add_parser(
        "daemon",
        help="run the controller for this node",
        description="Follow babeld, keep every gateway's WireGuard session warm, and move the steered "
        "prefixes to the best gateway in one WireGuard write. Runs in the foreground; one daemon per control socket.",
    )
    daemon.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE", help="node config (default: %(default)s)"
                        ).complete = TOML_FILE  # type: ignore[attr-defined]
    daemon.add_argument(
        "--metrics",
        metavar="ADDR:PORT",
        help=f"serve Prometheus metrics at http://ADDR:PORT/metrics, e.g. {DEFAULT_METRICS} "
        "(default: the config's node.metrics, else off)",
    )
    daemon.add_argument("--json", action="store_true", help="log one JSON object per line (as --log-format json)")
    daemon.set_defaults(func=cmd_daemon)

    wd = sub.add_parser(
        "withdraw",
        help="remove the routes this gateway announced for its clients",
        description="Remove the kernel routes this node announced into Babel for its gateway clients (route "
        "protocols route_protocol and standby_protocol). The daemon does this itself when it "
        "stops; run this after it crashed (the systemd unit does, as ExecStopPost). Other routes are left alone.",
    )
    wd.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE", help="node config (default: %(default)s)"
                    ).complete = TOML_FILE  # type: ignore[attr-defined]
    wd.add_argument("--json", action="store_true", help="machine-readable output")
    wd.set_defaults(func=cmd_withdraw)

    status = sub.add_parser(
        "status",
        help="ask the running daemon what it chose and why",
        description="Ask the running daemon, over its control socket, for its state: babeld sync, each uplink's "
        "chosen gateway and candidates (metric, handshake age, probes), the last switch and why, the gateway's "
        "clients, gossip and rejected datagrams. Opens no connection to babeld.",
    )
    _ask_daemon_options(status, 3.0)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    check = sub.add_parser(
        "check-config",
        help="validate a node config without touching anything",
        description="Validate a node config as the daemon does at start, without touching anything. Prints every "
        "problem as FILE:LINE: FIELD: MESSAGE; exits 0 if the config is good, 2 if not. A good config with [gossip] "
        "also prints the node's gossip public key, for every node's [[gossip.trust]].",
    )
    check.add_argument("file", metavar="FILE").complete = TOML_FILE  # type: ignore[attr-defined]
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=cmd_check_config)

    lab = sub.add_parser("lab", help="run a topology in network namespaces (root)",
                         description="Build a whole mesh on this machine: one network namespace per node, veth "
                         "links, wireguard-go tunnels, babeld, and meshctl daemons where the topology asks for them.")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="SUBCOMMAND", required=True)
    for name, func, text in (
        ("up", cmd_lab_up, "build the mesh: namespaces, veths, wireguard-go tunnels, babeld"),
        ("down", cmd_lab_down, "remove everything the lab made (also after a failed up)"),
        ("status", cmd_lab_status, "show the lab's nodes and each node's processes (babeld, wireguard-go, meshctl "
         "daemon), and whether they live; exits 1 if one died"),
    ):
        p = lab_sub.add_parser(name, help=text.split(";")[0], description=text[0].upper() + text[1:] + ". Needs root.")
        p.add_argument("file", metavar="FILE", help="topology file, or the name of one shipped with meshctl: "
                       + ", ".join(topologies())).complete = TOML_FILE  # type: ignore[attr-defined]
        p.add_argument("--tag", help="name prefix (1-6 chars) overriding the file's; run two copies side by side")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
        if name == "up":
            p.add_argument("--keep-on-failure", action="store_true", help="leave a failed lab in place to debug it")
        p.set_defaults(func=func)

    completion = sub.add_parser(
        "completion",
        help="print the shell completion script",
        description="Print the completion script for bash or zsh, e.g. "
        "meshctl completion bash > /etc/bash_completion.d/meshctl",
    )
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(func=cmd_completion)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # The parser is not kept: a daemon runs for months without it.
    args = daemon_command_line(sys.argv[1:] if argv is None else argv) or build_parser().parse_args(argv)
    if args.command == "daemon":
        return start(args)
    setup_logging(log_level(logging.WARNING, args.verbose), args.log_format, False)
    try:
        return guarded(args.func, args)
    except _OutputClosed:
        return EXIT_FAILURE  # quietly, as `yes | head` does: the reader has what it wanted


if __name__ == "__main__":
    sys.exit(main())
