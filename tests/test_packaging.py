"""The package installs both ways: pip (console scripts) and colcon (ament_python)."""

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_package_xml_is_format3_ament_python_with_deps():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "surgbot"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    for dep in ("rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "std_srvs",
                "diagnostic_msgs", "rosgraph_msgs"):
        assert dep in deps, dep


def test_console_scripts_installed_and_help_works():
    for exe in ("surgbot", "g1_bridge", "sim_node", "endoscope_holder"):
        assert (BIN / exe).exists(), f"{exe} not installed by pip"
    out = subprocess.run([str(BIN / "surgbot"), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "sim" in out.stdout and "bench" in out.stdout


def test_a_subcommand_imports_only_its_own_module():
    """`surgbot ctl ...` starts without the twin's MuJoCo/OpenGL (a CLI's start is felt by a running stack
    on 2 cores); `surgbot --help` still lists every subcommand, and `surgbot sim --help` has its arguments."""
    probe = ("import sys; from surgbot.cli import build_parser; p = build_parser({!r}); "
             "print(sorted(m for m in ('mujoco', 'torch', 'surgbot.sim.runner', 'surgbot.ctl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe.format("ctl")], capture_output=True, text=True, timeout=60,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "['surgbot.ctl']", out.stdout
    out = subprocess.run([sys.executable, "-m", "surgbot.cli", "--help"], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    for name in ("sim", "ctl", "up", "demo", "policy", "idm", "results", "bench", "data", "console"):
        assert f"    {name}" in out.stdout, (name, out.stdout)
    out = subprocess.run([sys.executable, "-m", "surgbot.cli", "sim", "--help"], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert out.returncode == 0 and "--scene" in out.stdout, out.stdout + out.stderr


def test_ros2_ws_links_to_this_package():
    link = REPO / "ros2_ws" / "src" / "surgbot"
    assert link.is_symlink()
    assert link.resolve() == REPO


def test_colcon_builds_the_workspace(tmp_path):
    out = subprocess.run(
        [str(BIN / "colcon"), "--log-base", str(tmp_path / "log"), "build",
         "--base-paths", str(REPO / "ros2_ws" / "src"),
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
         # crtk_msgs (ament_cmake, same workspace): tests/test_crtk_msgs.py builds it with colcon
         "--packages-ignore", "crtk_msgs"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    lib = tmp_path / "install" / "surgbot" / "lib" / "surgbot"
    for exe in ("g1_bridge", "sim_node", "endoscope_holder"):
        assert (lib / exe).exists(), f"ros2 run surgbot {exe} would not find it"
    share = tmp_path / "install" / "surgbot" / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / "surgbot").exists()
    assert (share / "surgbot" / "package.xml").exists()


def test_a_plain_install_adds_one_top_level_package(tmp_path):
    """`pip install .` puts sim/, bench/, policies/, teleop/ inside `surgbot` (issue 9): `import sim` fails."""
    target = tmp_path / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(REPO)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    tops = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name not in ("bin", "share")}
    assert tops == {"surgbot"}, tops
    probe = ("import importlib.util, surgbot.sim.scene, surgbot.bench, surgbot.teleop, surgbot.policies\n"
             f"assert surgbot.sim.scene.__file__.startswith({str(target)!r})\n"
             "assert importlib.util.find_spec('sim') is None, 'a top-level sim was installed'\n"
             "assert (surgbot.area_path('sim') / 'models' / 'g1_29dof.xml').is_file()\n")
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r})\n" + probe],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
