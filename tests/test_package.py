"""The distribution: `python -m build` makes an sdist and a wheel that ship what an installed meshctl needs,
and the wheel installs into a fresh virtualenv beside Babel, the i18n library, without either breaking."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.packaging import DISTRIBUTION, ROOT, build

pytestmark = pytest.mark.package


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build(tmp_path_factory.mktemp("dist"))


def test_sdist_holds_the_whole_project(dist: tuple[Path, Path]) -> None:
    sdist, _ = dist
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for path in ("pyproject.toml", "README.md", "docs/architecture.md", "meshctl/cli.py", "topologies/seed.toml",
                 "contrib/meshctl.service", "contrib/meshctl.1", "babel/babeld-meshctl.conf",
                 "babel/captured/babeld-1.12.1-dump.txt", "tests/test_package.py", "bootstrap", "Makefile"):
        assert path in names, path
    assert not any(n.startswith((".venv/", ".git/")) or "__pycache__" in n for n in names)


def test_wheel_ships_the_data_and_no_top_level_babel(dist: tuple[Path, Path]) -> None:
    _, wheel = dist
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"meshctl", f"{DISTRIBUTION}-0.1.0.dist-info", f"{DISTRIBUTION}-0.1.0.data"}, tops
    shipped = {p.relative_to(ROOT).as_posix() for d in ("topologies", "contrib") for p in (ROOT / d).rglob("*")
               if p.is_file()} | {"babel/babeld-meshctl.conf"}
    assert {n.removeprefix("meshctl/data/") for n in names if n.startswith("meshctl/data/")} == shipped
    data = f"{DISTRIBUTION}-0.1.0.data/data/share"
    assert {f"{data}/man/man1/meshctl.1", f"{data}/bash-completion/completions/meshctl",
            f"{data}/zsh/site-functions/_meshctl", f"{data}/meshctl/meshctl.service", f"{data}/meshctl/node.toml.example",
            f"{data}/meshctl/babeld-meshctl.conf"} <= names
    entry_points = zipfile.ZipFile(wheel).read(f"{DISTRIBUTION}-0.1.0.dist-info/entry_points.txt").decode()
    assert "meshctl = meshctl.__main__:main" in entry_points


def test_wheel_installs_beside_babel_and_both_import(dist: tuple[Path, Path], tmp_path: Path) -> None:
    _, wheel = dist
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py, bin_ = venv / "bin" / "python", venv / "bin"
    out = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel), "Babel"], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    probe = (
        "import babel, meshctl, meshctl.babel, meshctl.cli\n"
        "from babel import Locale\n"
        "from babel.numbers import format_decimal\n"
        "assert Locale.parse('de_DE').get_display_name('en') == 'German (Germany)'\n"
        "assert format_decimal(1234.5, locale='de_DE') == '1.234,5'\n"
        "assert 'meshctl' not in babel.__file__, babel.__file__\n"
        "from meshctl.babel.parser import parse_line\n"
        "from meshctl.shipped import shipped, topologies\n"
        "assert 'site-packages' in str(shipped('contrib', 'meshctl.service'))\n"
        "print(sorted(topologies()))\n"
    )
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "seed" in out.stdout and "grid4x4" in out.stdout
    # the command, its completion and its man page, installed by the package
    version = subprocess.run([str(bin_ / "meshctl"), "--version"], capture_output=True, text=True, timeout=60,
                             cwd=tmp_path)
    assert version.stdout.strip() == "meshctl 0.1.0"
    completion = subprocess.run([str(bin_ / "meshctl"), "completion", "bash"], capture_output=True, text=True,
                                timeout=60, cwd=tmp_path)
    assert completion.returncode == 0 and "_shtab_meshctl" in completion.stdout
    assert (venv / "share" / "man" / "man1" / "meshctl.1").read_text().startswith(".TH MESHCTL")
    assert (venv / "share" / "bash-completion" / "completions" / "meshctl").read_text() == completion.stdout
    # a shipped topology by name, from outside any checkout (status of a lab that is not up)
    status = subprocess.run([str(bin_ / "meshctl"), "lab", "status", "seed", "--tag", "pkgt", "--json"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    if status.returncode == 4:
        pytest.skip("lab status needs root")
    assert status.returncode == 0 and '"status": "down"' in status.stdout, status.stderr
