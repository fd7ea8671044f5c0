"""NetJSON, maps and the metrics listener on live labs: what OpenWISP, a browser and a hostile local user see."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable

import jsonschema
import pytest

from meshctl.lab.state import LabState
from tests import browser
from tests.conftest import static_path
from tests.lab.conftest import RunningLab
from tests.lab.test_failover import ready, scrape, status, uplink, wait_moved_to_gw2
from tests.lab.test_grid import whole_grid

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")
CLIENT_ADDRESS = "10.98.0.1"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshctl.cli", *args], capture_output=True, text=True, timeout=120)


def netjson(*args: str) -> dict:
    out = cli("topology", "dump", "--format", "netjson", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


CLIENT_ID = "02:6d:63:6c:00:00:00:01"  # the seed's client: node 1


def check_netjson(data: dict, schema: dict) -> None:
    """What OpenWISP needs: the schema, netdiff either way, own addresses only, babeld's version.

    The client's uplink address is the client's own (its babeld announces it, as the mesh's way back
    to it): only the client may list it, never a gateway that routes it.
    """
    from netdiff import NetJsonParser

    jsonschema.validate(data, schema)
    assert data["version"] == "1.12.1"
    for directed in (False, True):
        parsed = NetJsonParser(data=json.dumps(data), directed=directed)
        assert parsed.graph.number_of_edges() == len(data["links"])  # each link once
    for node in data["nodes"]:
        for address in node["local_addresses"]:
            assert ipaddress.ip_address(address), address  # an address, never a prefix like 10.200.0.0/24
            assert address != CLIENT_ADDRESS or node["id"] == CLIENT_ID, node


@pytest.fixture
def schema() -> dict:
    with open(static_path("netjson-networkgraph.schema.json")) as f:
        return json.load(f)


def test_seed_netjson_of_every_node_and_of_the_mesh(start_lab: Callable[[str], RunningLab], schema: dict,
                                                    tmp_path) -> None:  # noqa: ANN001
    lab = start_lab("seed")
    lab.wait_for(ready(lab), 60, "seed ready: gw1 chosen and announcing the client")
    plan = lab.plan
    ids = {n.name: n.router_id for n in plan.nodes}
    for node in plan.nodes:
        data = netjson("--babel", lab.babel(node.name), "--config", node.config_path)
        check_netjson(data, schema)
        me = next(n for n in data["nodes"] if n["properties"].get("local"))
        assert me["id"] == node.router_id and str(node.mesh4.ip) in me["local_addresses"]
        if node.name == "gw1":  # it announces the client's address, which is not its own
            assert f"{CLIENT_ADDRESS}/32" in me["properties"]["prefixes"]
    views = {}
    for node in plan.nodes:
        data = netjson("--mesh", "--socket", node.control_socket)
        check_netjson(data, schema)
        views[node.name] = data
        assert {n["id"] for n in data["nodes"]} == set(ids.values())
        links = {frozenset((lk["source"], lk["target"])): lk for lk in data["links"]}
        assert len(links) == len(data["links"]) == 4  # each link once ...
        assert all(lk["properties"]["reverse_cost"] is not None for lk in data["links"])  # ... with both costs
        back = links[frozenset((ids["client"], ids["gw2"]))]
        assert (back["cost"], back["properties"]["reverse_cost"]) == (160, 160)  # the backup link costs more
        by_name = {n["label"]: n for n in data["nodes"]}
        # One choice per family (the seed steers both): gw1 for each.
        assert {u["gateway"] for u in by_name["client"]["properties"]["uplinks"] if u["chosen"]} == {"gw1"}
        assert by_name["gw1"]["properties"]["serving"] == ["client"]
        assert "10.200.0.0/24" in by_name["upstream"]["properties"]["prefixes"]
    first = views["client"]
    for name, data in views.items():  # the same mesh, whichever daemon answered
        assert data["nodes"] == first["nodes"], name

    # Maps: a node's own map reaches every router; the mesh map has the uplink plane; the page is written.
    svg = tmp_path / "upstream.svg"
    out = cli("topology", "render", "--babel", lab.babel("upstream"), "-o", str(svg))
    assert out.returncode == 0, out.stderr
    assert svg.read_text().count('class="edge"') == 2 + 1  # two links, and the client hung off its next hop
    page = tmp_path / "mesh.html"
    out = cli("topology", "render", "--mesh", "--socket", plan.node("gw2").control_socket, "-o", str(page))
    assert out.returncode == 0, out.stderr
    config = json.loads(re.search(r'<script id="mesh-config" type="application/json">(.*?)</script>',
                                  page.read_text(), re.S).group(1))  # type: ignore[union-attr]
    assert len(config["graph"]["nodes"]) == 4 and len(config["graph"]["links"]) == 4


HOLDER = r"""
import resource, selectors, signal, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
count, duration, port = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
sel = selectors.DefaultSelector()
def hold():
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(("::1", port))
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:
        pass
    sel.register(s, selectors.EVENT_READ)
for _ in range(count):
    hold()
print("holding", count, flush=True)
reopened, end = 0, time.monotonic() + duration
signal.signal(signal.SIGTERM, lambda *_: (print("reopened", reopened, flush=True), sys.exit(0)))
while time.monotonic() < end:
    for key, _ in sel.select(0.2):
        s = key.fileobj
        try:
            data = s.recv(1)
        except OSError:
            data = b""
        if not data:  # the listener cut it off (or refused it): open another, keep the pressure on
            sel.unregister(s)
            s.close()
            hold()
            reopened += 1
    time.sleep(0.02)
print("reopened", reopened, flush=True)
"""


def daemon_pid(lab: RunningLab, node: str) -> int:
    state = LabState.load(lab.lab.state_path)
    assert state is not None
    return next(r.pid for r in state.processes if r.node == node and r.what == "meshctl daemon")


def test_idle_metrics_connections_of_a_local_user_cannot_starve_a_failover(
    start_lab: Callable[[str], RunningLab],
) -> None:
    """Issue: 2,000 idle connections held by nobody while gw1 dies; the switch's WireGuard write works, no flap."""
    lab = start_lab("seed")
    lab.wait_for(ready(lab), 60, "seed ready for fail-over")
    client = lab.plan.node("client")
    pid = daemon_pid(lab, "client")
    subprocess.run(["prlimit", f"--pid={pid}", "--nofile=1024:1024"], check=True)  # systemd's default for a service
    port = int(client.metrics.rsplit(":", 1)[1])
    before = status(lab, "client")
    holder = subprocess.Popen(
        ["ip", "netns", "exec", client.namespace, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "/usr/bin/python3", "-c", HOLDER, "2000", "30", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    fds = []
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().startswith("holding 2000"), holder.stderr.read() if holder.stderr else ""
        time.sleep(3.0)  # several deadlines: the listener has cut off and taken in connections meanwhile
        fds.append(len(os.listdir(f"/proc/{pid}/fd")))
        lab.lab.fail_node("gw1")
        wait_moved_to_gw2(lab, "switch to gw2 under the connection flood")
        fds.append(len(os.listdir(f"/proc/{pid}/fd")))
        time.sleep(5.0)  # time for any flap to show
        fds.append(len(os.listdir(f"/proc/{pid}/fd")))
        after = status(lab, "client")
    finally:
        holder.terminate()  # ours, by its PID (setpriv and python exec in place)
        out, err = holder.communicate(timeout=30)
    print(f"daemon descriptors during the flood: {fds} (limit 1024); holder: {out.strip()!r} {err.strip()[:200]!r}")
    up = after["uplinks"][0]
    assert up["chosen"] == "gw2"
    assert re.search(r"gw1 (down|unreachable)", up["last_switch"]["reason"]), up["last_switch"]
    assert up["switches"] == before["uplinks"][0]["switches"] + 1, "a gateway flapped"
    assert after["counters"]["backend_errors"] == before["counters"]["backend_errors"] == 0  # the write succeeded
    assert max(fds) < 200
    assert uplink(lab)["switches"] == up["switches"]
    assert scrape(lab, "client")["meshctl_wireguard_write_errors_total"] == {(): 0}  # and the listener serves again
    with open(os.path.join(client.run_dir, "meshctl.log"), errors="replace") as f:
        log = f.read()
    assert "Traceback" not in log and "EMFILE" not in log and "Too many open files" not in log


def test_live_mesh_page_draws_grid4x4_and_follows_a_link_cut(start_lab: Callable[[str], RunningLab],
                                                              tmp_path) -> None:  # noqa: ANN001
    """The daemon's /mesh in Debian's chromium: every node and link of the grid, then a cut link goes.

    MESHCTL_UPDATE_DOCS=1 keeps the screenshot as docs/mesh-map-grid4x4.png.
    """
    if browser.chromium() is None and os.environ.get("CI") != "true":
        pytest.skip("Debian's chromium is not installed (./bootstrap)")
    lab = start_lab("grid4x4")
    plan = lab.plan
    ids = {n.router_id for n in plan.nodes}
    lab.wait_for(whole_grid(lab, ids, 48), 90, "whole grid in every node's gossip view")
    r11 = plan.node("r11")
    with browser.Browser(prefix=("ip", "netns", "exec", r11.namespace)) as page:
        page.open(f"http://{r11.metrics}/mesh")

        def drawn(links: int) -> Callable[[], str | None]:
            def check() -> str | None:
                got = page.evaluate("[document.body.dataset.nodes, document.body.dataset.links]")
                return None if got == ["16", str(links)] else f"page shows nodes, links = {got}"
            return check

        lab.wait_for(drawn(24), 30, "the page drawing the whole grid")
        page.screenshot(os.path.join(DOCS if os.environ.get("MESHCTL_UPDATE_DOCS") else str(tmp_path),
                                     "mesh-map-grid4x4.png"))
        r22, r23 = plan.node("r22"), plan.node("r23")
        veth = next(v.ifname for v in r22.veths if v.peer == "r23")
        pair = "|".join(sorted((r22.router_id, r23.router_id)))
        assert pair in page.evaluate("document.body.dataset.linkset")
        cut = time.monotonic()
        subprocess.run(["ip", "-n", r22.namespace, "link", "set", veth, "down"], check=True)
        took = lab.wait_for(lambda: None if pair not in page.evaluate("document.body.dataset.linkset")
                            else "r22-r23 still drawn", 30, "the page dropping the cut link")
        print(f"the live page dropped the cut link {took:.1f} s after the cut "
              f"({time.monotonic() - cut:.1f} s incl. polling); babeld hello interval 1 s, page refresh 2 s")
        assert page.evaluate("document.body.dataset.links") == "23", page.evaluate("document.body.dataset.linkset")
        assert page.evaluate("document.body.dataset.error") == ""
