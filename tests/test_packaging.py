"""core/ installs as `enhancer` and plugins/ as `enhancer.plugins`, both in editable and in regular installs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile

import enhancer
import enhancer.plugins.synthetic

from conftest import REPO


def _declared_packages() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def _package_dirs() -> set[str]:
    found = set()
    for root, name in ((REPO / "core", "enhancer"), (REPO / "plugins", "enhancer.plugins")):
        for init in root.rglob("__init__.py"):
            relative = init.parent.relative_to(root).parts
            found.add(".".join((name, *relative)))
    return found


def test_every_package_directory_is_declared():
    assert _package_dirs() == _declared_packages()


def test_editable_install_maps_core_and_plugins():
    assert enhancer.__file__ == str(REPO / "core" / "__init__.py")
    assert enhancer.plugins.synthetic.__file__ == str(REPO / "plugins" / "synthetic" / "__init__.py")
    assert not (REPO / "core" / "plugins").exists()  # it would shadow plugins/ as enhancer.plugins


def test_regular_install_from_the_wheel(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        check=True,
        timeout=300,
    )
    wheel = next((tmp_path / "dist").glob("enhancer-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "enhancer/plugins/synthetic/__init__.py" in names
    assert "enhancer/registry.py" in names and "enhancer/py.typed" in names
    assert not any(n.startswith(("core/", "plugins/", "tests/")) for n in names)
    shipped = {p.relative_to(REPO / "core").as_posix() for p in (REPO / "core" / "assets").rglob("*") if p.is_file()}
    assert {f"enhancer/{p}" for p in shipped} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[enhancer]" in text and "synthetic = enhancer.plugins.synthetic" in text

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import enhancer, enhancer.plugins.trl_grpo, enhancer.registry as r; "
        "print(enhancer.__file__); print(sorted(r.PluginRegistry.load().names('backend')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(str(site))
    assert "synthetic" in result.stdout
