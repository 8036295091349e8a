"""A third-party plugin package (examples/third_party_plugin), installed the way a user would install it (pip, into
a separate site folder on PYTHONPATH, never into the venv), is found through the "enhancer" entry-point group,
listed next to the built-ins and used by `enhancer run`; a plugin package that fails at import is reported, not
fatal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from enhancer.video import read_frames

from conftest import BIN, REPO

EXAMPLE = REPO / "examples" / "third_party_plugin"
EXAMPLE_PACKAGE = "enhancer-example-plugin 0.1.0"
BROKEN_PACKAGE = "enhancer-broken-plugin 0.1.0"
COLOR = "#d04080"
RGB = (0xD0, 0x40, 0x80)


def _pip_install(source: Path, site: Path) -> Path:
    # Build from a copy, so the in-tree build (build/, *.egg-info) never lands in the repository.
    build_copy = site.parent / f"{source.name}-src"
    shutil.copytree(source, build_copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(site),
            str(build_copy),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return site


def _write_package(root: Path, dist: str, entry_point: str, module: str, body: str) -> Path:
    """A minimal plugin package: one module registered under `entry_point` in the "enhancer" group."""
    (root / module).mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=69"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "0.1.0"
        dependencies = []

        [project.entry-points.enhancer]
        {entry_point} = "{module}"

        [tool.setuptools]
        packages = ["{module}"]
        """)
    )
    (root / module / "__init__.py").write_text(textwrap.dedent(body))
    return root


def _write_broken_package(root: Path) -> Path:
    body = """\
        import enhancer

        raise RuntimeError("boom")


        @enhancer.hookimpl
        def enhancer_video_backends():
            return {"broken_color": object}
        """
    return _write_package(root, "enhancer-broken-plugin", "broken_plugin", "enhancer_broken_plugin", body)


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, Path]:
    """Both packages pip-installed once per module, each into its own --target folder."""
    root = tmp_path_factory.mktemp("plugin-sites")
    broken_source = _write_broken_package(root / "broken-plugin")
    return {
        "example": _pip_install(EXAMPLE, root / "example" / "site"),
        "broken": _pip_install(broken_source, root / "broken" / "site"),
    }


def _env(cli_env: dict[str, str], *site_dirs: Path) -> dict[str, str]:
    env = dict(cli_env)
    env["PYTHONPATH"] = os.pathsep.join([*(str(s) for s in site_dirs), env["PYTHONPATH"]])
    return env


def _plugins_list(env: dict[str, str]) -> dict:
    result = subprocess.run(
        [str(BIN / "enhancer"), "plugins", "list", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_installed_package_is_listed_next_to_builtins(sites, cli_env):
    listing = _plugins_list(_env(cli_env, sites["example"]))
    rows = {(row["kind"], row["name"]): row for row in listing["plugins"]}
    solid = rows[("backend", "solid_color")]
    assert solid["package"] == EXAMPLE_PACKAGE
    assert solid["plugin"] == "example_plugin"
    assert solid["summary"].startswith("One-colour mp4 files")
    assert rows[("backend", "synthetic")]["package"].startswith("enhancer ")
    assert listing["broken"] == []


def test_not_listed_without_the_site_folder(cli_env):
    """The package really comes from the --target folder: the venv itself was left untouched."""
    listing = _plugins_list(cli_env)
    assert "solid_color" not in {row["name"] for row in listing["plugins"]}


def test_run_uses_the_third_party_backend(sites, cli_env, tiny_model_dir, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        textwrap.dedent(f"""\
        stage1_data: [{REPO / "data" / "stage1"}]
        stage2_data: [{REPO / "data" / "stage2"}]
        backend_options:
          color: "{COLOR}"
        sft:
          batch_size: 2
          max_length: 256
          gradient_accumulation: 1
        rl:
          prompts_per_step: 1
          samples_per_prompt: 2
          video_size: 32x32
          video_seconds: 1
        """)
    )
    out = tmp_path / "run"
    result = subprocess.run(
        [
            str(BIN / "enhancer"),
            "run",
            "--recipe",
            str(recipe),
            "--backend",
            "solid_color",
            "--reward",
            "stub_score",
            "--trainer",
            "stub_trainer",
            "--plugin",
            "stub_plugins",
            "--model",
            str(tiny_model_dir),
            "--out",
            str(out),
            "--sft-steps",
            "1",
            "--rl-steps",
            "1",
        ],
        capture_output=True,
        text=True,
        env=_env(cli_env, sites["example"]),
        timeout=540,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "solid_color"
    config = (out / "config.yaml").read_text()
    assert "solid_color" in config and COLOR in config

    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == 1 * 2  # one step, one prompt, two samples
    for trace in traces:
        assert trace["backend"] == "solid_color"
        assert trace["rewards"]["stub_score"] is not None  # the stub scorer read the mp4
        assert trace["reward"] is not None
        path = Path(trace["video_path"])
        assert path.parent == out / "video-cache" / "videos" and path.suffix == ".mp4"  # the core's cache
        frames = read_frames(path)
        assert frames.shape == (4, 32, 32, 3)  # 1 s at 4 fps, 32x32
        difference = abs(frames.astype(int) - list(RGB))
        assert difference.max() <= 12, f"{path}: colour off by up to {difference.max()}"


def test_broken_package_is_reported_and_not_fatal(sites, cli_env, tmp_path):
    env = _env(cli_env, sites["broken"], sites["example"])
    listing = _plugins_list(env)
    broken = {b["plugin"]: b for b in listing["broken"]}
    assert set(broken) == {"broken_plugin"}
    assert broken["broken_plugin"]["source"] == BROKEN_PACKAGE
    assert "RuntimeError: boom" in broken["broken_plugin"]["error"]
    names = {(row["kind"], row["name"]) for row in listing["plugins"]}
    assert {("backend", "synthetic"), ("scorer", "keep"), ("trainer", "trl_grpo"), ("backend", "solid_color")} <= names

    result = subprocess.run(
        [str(BIN / "enhancer"), "run", "--backend", "broken_color", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "no backend named 'broken_color'" in result.stderr
    assert "broken_plugin" in result.stderr and BROKEN_PACKAGE in result.stderr and "boom" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # it failed before anything was written


def test_entry_point_name_clash_is_reported_not_silent(cli_env, tmp_path):
    body = (
        "import enhancer\n\n\n@enhancer.hookimpl\ndef enhancer_video_backends():\n    return {'clash_color': object}\n"
    )
    source = _write_package(tmp_path / "clash", "enhancer-clash-plugin", "synthetic", "enhancer_clash_plugin", body)
    site = _pip_install(source, tmp_path / "site")
    listing = _plugins_list(_env(cli_env, site))
    clashes = [b for b in listing["broken"] if b["plugin"] == "synthetic"]
    assert len(clashes) == 1 and "entry-point name 'synthetic' is already used by" in clashes[0]["error"]
