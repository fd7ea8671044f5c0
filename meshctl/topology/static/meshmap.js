// meshctl's mesh map: draws a NetJSON NetworkGraph of the mesh with Cytoscape.js.
// The data comes inline (a saved page) or from a live URL polled every few
// seconds (the daemon's /mesh page); nothing else is fetched.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("mesh-config").textContent);
  var summary = document.getElementById("summary");
  var details = document.getElementById("details");
  var cy = cytoscape({
    container: document.getElementById("map"),
    wheelSensitivity: 0.3,
    style: [
      { selector: "node", style: {
        "shape": "round-rectangle", "width": "label", "height": "label", "padding": "8px",
        "label": "data(text)", "text-wrap": "wrap", "text-valign": "center", "text-halign": "center",
        "font-family": "monospace", "font-size": 11, "background-color": "#ffffff",
        "border-width": 1.5, "border-color": "#444444" } },
      { selector: "node.gateway", style: { "background-color": "#9ecae1" } },
      { selector: "node.client", style: { "background-color": "#fdd0a2" } },
      { selector: "node.upstream", style: { "background-color": "#d9d9d9" } },
      { selector: "node.unreported", style: { "border-style": "dashed", "color": "#666666" } },
      { selector: "node.local", style: { "border-width": 4 } },
      { selector: "edge", style: {
        "curve-style": "bezier", "width": 2, "line-color": "#555555", "label": "data(text)",
        "font-family": "monospace", "font-size": 10, "text-background-color": "#ffffff",
        "text-background-opacity": 0.85, "text-background-padding": "1px" } },
      { selector: "edge.via", style: { "line-style": "dotted", "line-color": "#999999", "color": "#777777" } },
      { selector: "edge.uplink", style: { "line-style": "dashed", "line-color": "#6baed6", "color": "#08519c",
        "target-arrow-shape": "triangle", "target-arrow-color": "#6baed6" } },
      { selector: "edge.chosen", style: { "width": 4, "line-color": "#08519c", "target-arrow-color": "#08519c" } },
      { selector: ":selected", style: { "overlay-opacity": 0.15 } }
    ]
  });
  var refreshes = 0;

  function roles(node) { return (node.properties && node.properties.roles) || []; }

  function elements(graph) {
    var out = [], byLabel = {}, ids = {};
    (graph.nodes || []).forEach(function (n) { byLabel[n.label || n.id] = n.id; ids[n.id] = true; });
    (graph.nodes || []).forEach(function (n) {
      var p = n.properties || {}, addresses = n.local_addresses || [];
      var shown = addresses.length ? addresses : (p.prefixes || []);
      var text = [n.label || n.id].concat(shown.slice(0, 3)).join("\n");
      var classes = roles(n).slice();
      if (p.reported === false) classes.push("unreported");
      if (p.local) classes.push("local");
      out.push({ group: "nodes", data: { id: n.id, text: text, node: n }, classes: classes.join(" ") });
    });
    (graph.links || []).forEach(function (l) {
      var p = l.properties || {};
      var text = p.reverse_cost !== undefined && p.reverse_cost !== null
        ? l.cost + " / " + p.reverse_cost : String(l.cost);
      out.push({ group: "edges", data: { id: "l " + l.source + " " + l.target, source: l.source, target: l.target,
        text: text, link: l }, classes: "babel" });
    });
    (graph.nodes || []).forEach(function (n) {
      var p = n.properties || {};
      if (p.via && ids[p.via]) {
        out.push({ group: "edges", data: { id: "v " + p.via + " " + n.id, source: p.via, target: n.id,
          text: "metric " + p.metric }, classes: "via" });
      }
      var uplinks = {};  // one edge per gateway, chosen in any address family
      (p.uplinks || []).forEach(function (u) {
        var gw = ids[u.router_id] ? u.router_id : byLabel[u.gateway];
        if (!gw) return;
        var seen = uplinks[gw];
        uplinks[gw] = { chosen: u.chosen || (seen && seen.chosen), state: seen ? seen.state : u.state };
      });
      Object.keys(uplinks).sort().forEach(function (gw) {
        var u = uplinks[gw];
        out.push({ group: "edges", data: { id: "u " + n.id + " " + gw, source: n.id, target: gw,
          text: u.chosen ? "chosen" : u.state }, classes: "uplink" + (u.chosen ? " chosen" : "") });
      });
    });
    return out;
  }

  function layout(all) {
    var opts = { name: "cose", animate: false, fit: true, padding: 30, nodeRepulsion: 9000,
      idealEdgeLength: 90, randomize: all, componentSpacing: 60 };
    cy.layout(opts).run();
  }

  function draw(graph) {
    var want = elements(graph), keep = {}, added = false;
    cy.batch(function () {
      want.forEach(function (e) {
        keep[e.data.id] = true;
        var have = cy.getElementById(e.data.id);
        if (have.length) {
          have.data(e.data);
          have.classes(e.classes);
        } else {
          cy.add(e);
          added = added || e.group === "nodes";
        }
      });
      cy.elements().forEach(function (el) { if (!keep[el.id()]) cy.remove(el); });
    });
    if (added) layout(refreshes === 0);
    refreshes += 1;
    var links = cy.edges(".babel").length, uplinks = cy.edges(".uplink").length;
    var chosen = cy.edges(".chosen").map(function (e) {
      return e.source().data("node").label + " \u2192 " + e.target().data("node").label;
    });
    var body = document.body.dataset;
    body.nodes = cy.nodes().length; body.links = links; body.uplinks = uplinks; body.refreshes = refreshes;
    body.linkset = cy.edges(".babel").map(function (e) {
      return [e.source().id(), e.target().id()].sort().join("|");
    }).sort().join(",");
    body.error = "";
    summary.textContent = "babel " + (graph.label || "") + ": " + cy.nodes().length + " nodes, " + links +
      " links" + (chosen.length ? "; uplinks " + chosen.join(", ") : "") +
      (config.live ? "; live, updated " + new Date().toLocaleTimeString() : "");
  }

  cy.on("tap", "node, edge", function (evt) {
    var d = evt.target.data();
    details.textContent = JSON.stringify(d.node || d.link || { text: d.text }, null, 1);
    details.hidden = false;
  });
  cy.on("tap", function (evt) { if (evt.target === cy) details.hidden = true; });

  function poll() {
    fetch(config.live, { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(draw)
      .catch(function (err) {
        document.body.dataset.error = String(err);
        summary.textContent = "cannot refresh: " + err + " (showing the last view)";
      })
      .then(function () { setTimeout(poll, config.interval * 1000); });
  }

  if (config.graph) draw(config.graph);
  if (config.live) poll();
})();
