"""The documentation stands alone: every relative link resolves inside the repository, nothing points at files
a user of the package does not have, one babeld socket path everywhere, and the metrics table lists what the
daemon exports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "topologies" / "README.md",
               ROOT / "babel" / "README.md"])
# What users read besides the Markdown: shipped files with comments.
USER_FILES = DOCS + sorted([*(ROOT / "contrib").glob("*.*"), *(ROOT / "topologies").glob("*.toml"),
                            ROOT / "babel" / "babeld-meshctl.conf", ROOT / "contrib" / "meshctl.service"])
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|<img[^>]+src=\"([^\"]+)\"")
CODE_BLOCK = re.compile(r"^```.*?^```", re.M | re.S)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings."""
    text = CODE_BLOCK.sub("", path.read_text())
    out = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def links(path: Path) -> list[str]:
    text = CODE_BLOCK.sub("", path.read_text())
    return [a or b for a, b in LINK.findall(text)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(doc: Path) -> None:
    bad = []
    for target in links(doc):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:: outside, and meant to be
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.is_relative_to(ROOT):
            bad.append(f"{target}: outside the repository")
        elif not path.exists():
            bad.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            bad.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not bad, f"{doc.relative_to(ROOT)}: " + "; ".join(bad)


def test_the_link_checker_catches_what_it_should(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Top\n[x](b.md) [y](../../etc/passwd) [z](#nowhere) [ok](#top) [web](https://x.org)\n")
    assert links(tmp_path / "a.md") == ["b.md", "../../etc/passwd", "#nowhere", "#top", "https://x.org"]
    assert anchors(tmp_path / "a.md") == {"top"}


@pytest.mark.parametrize("path", USER_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_points_at_what_users_do_not_have(path: Path) -> None:
    text = path.read_text()
    for pattern, what in ((r"\.\./shared|shared/DESIGN", "the developers' shared folder"),
                          (r"DESIGN\.md|STYLE\.md", "a design note that is not shipped"),
                          (r"\bissues? #?\d+|\(#\d+\)|\bdone \(#", "an issue number")):
        found = re.search(pattern, text, re.I)
        assert found is None, f"{path.relative_to(ROOT)} points at {what}: {found.group(0)!r}"


def test_one_babeld_socket_path_everywhere() -> None:
    paths = {}
    for path in [*USER_FILES, ROOT / "meshctl" / "cli.py"]:
        for found in re.findall(r"/run/babeld[\w./-]*", path.read_text()):
            paths.setdefault(found.rstrip("."), []).append(path.relative_to(ROOT).as_posix())
    assert set(paths) == {"/run/babeld/babel.sock"}, paths


def test_metrics_table_lists_every_exported_family() -> None:
    source = (ROOT / "meshctl" / "node" / "metrics.py").read_text()
    exported = set(re.findall(r"\"(meshctl_[a-z_]+)\"", source))
    readme = (ROOT / "README.md").read_text()
    table = "\n".join(line for line in readme.splitlines() if line.startswith("  | `meshctl_"))
    documented = set(re.findall(r"`(meshctl_[a-z_]+)`", table))
    # Counters are exposed with _total, the gossip byte counter with _bytes_total.
    missing = [name for name in exported if not any(d == name or d.startswith(name + "_") for d in documented)]
    unknown = [d for d in documented if not any(d == name or d.startswith(name + "_") for name in exported)]
    assert not missing and not unknown, (missing, unknown)
    assert {"meshctl_gossip_origins", "meshctl_gossip_accepted_total", "meshctl_gossip_rejected_datagrams_total",
            "meshctl_gossip_bytes_total"} <= documented
