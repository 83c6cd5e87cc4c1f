"""The package as users install it: its version is the server release it ships with (the
workspace's, and what the `shoal` binary under test reports), and it builds as a wheel of that
version holding the whole package."""

import json
import subprocess
import sys
import tempfile
import zipfile

import pytest

import shoal
from conftest import REPO, shoal_bin


# The standard library reads TOML from Python 3.11 on (the package itself runs on 3.9+).
tomllib = pytest.importorskip("tomllib")


def workspace_version() -> str:
    with open(REPO / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def test_the_client_version_is_the_servers():
    built = json.loads(subprocess.run([shoal_bin(), "build-info"], capture_output=True, text=True, check=True).stdout)
    assert shoal.__version__ == workspace_version() == built["version"]


def test_the_package_builds_as_a_wheel_of_that_version():
    with tempfile.TemporaryDirectory(prefix="shoal-wheel-") as out:
        r = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", out, str(REPO / "python")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, f"pip wheel failed:\n{r.stdout}\n{r.stderr}"
        wheel = f"{out}/shoal-{workspace_version()}-py3-none-any.whl"
        with zipfile.ZipFile(wheel) as z:
            names = set(z.namelist())
            metadata = z.read(f"shoal-{workspace_version()}.dist-info/METADATA").decode()
        modules = {p.name for p in (REPO / "python" / "shoal").glob("*.py")}
        assert {f"shoal/{m}" for m in modules} <= names, sorted(names)
        assert f"Version: {workspace_version()}" in metadata
        assert "Requires-Dist: adbc-driver-flightsql" in metadata
