"""The installed package works on its own: installed into a fresh virtual environment (as a
built wheel, and by a plain `pip install <folder>`) and run from an empty folder with no
settings, it serves and demos with its bundled files.

The source is exactly what the Dockerfile's build stage copies, so a file the image would miss
fails here too. Installs run offline (no build isolation) and without dependencies; the fresh
environment sees this environment's third-party packages through a `.pth` line. A `.pth` line
only adds a path (the checkout's editable-install hook there is not run), so `relay` itself can
come only from the fresh install, which the first test checks.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from relay.records import sqlite as store_sqlite
from tests.conftest import TIME_SCALE
from tests.fakes.tooling import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Installed:
    bin: Path
    workdir: Path  # empty: no prompts/, no samples/

    def env(self, **extra: str) -> dict[str, str]:
        # Nothing but a PATH and a HOME: no RELAY_*, OPENAI_* or TWILIO_* settings.
        return {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.workdir), **extra}


def _dockerfile_build_context(target: Path) -> Path:
    """Copy what the Dockerfile's build stage copies (symlinks kept as links, like COPY)."""
    target.mkdir(parents=True)
    stage = (ROOT / "Dockerfile").read_text().split("\nFROM ", 2)[1]  # the first stage only
    for line in stage.splitlines():
        if line.startswith("COPY "):
            *sources, _ = line.split()[1:]
            for name in sources:
                src = ROOT / name
                if src.is_dir():
                    shutil.copytree(src, target / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    (target / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target / name)
    return target


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module", params=["wheel", "source"])
def installed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp(f"packaging-{request.param}")
    context = _dockerfile_build_context(base / "context")
    if request.param == "wheel":
        wheels = base / "wheels"
        _pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(context))
        (target,) = [str(p) for p in wheels.glob("twilio_flex_assist_relay-*.whl")]
    else:
        target = str(context)  # `pip install .` in the checkout
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    fresh_python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(fresh_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "_dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n" + sysconfig.get_paths()["platlib"] + "\n"
    )
    _pip("--python", str(fresh_python), "install", "--quiet", "--no-deps", "--no-build-isolation", target)
    workdir = base / "empty"
    workdir.mkdir()
    yield Installed(venv / "bin", workdir)


def test_building_the_package_prints_no_packaging_warning(tmp_path: Path) -> None:
    """A fresh `pip install .` once printed ~150 setuptools warnings (asset folders left out of
    package discovery); the build's own output, verbose, must carry no warning class."""
    context = _dockerfile_build_context(tmp_path / "context")
    build = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation"]
    proc = subprocess.run(
        [*build, "-w", str(tmp_path), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if re.search(r"\b\w+Warning\b", line)]
    assert not warnings, "\n".join(warnings[:20])


def test_the_relay_comes_from_the_wheel_with_its_files(installed: Installed) -> None:
    probe = (
        "import relay, relay.bundled as b; print(relay.__file__); print(b.bundled_prompts_dir()); "
        "print(b.bundled_sample_call()); print(len(b.console_asset('console.js')))"
    )
    out = subprocess.run(
        [str(installed.bin / "python"), "-c", probe],
        cwd=installed.workdir,
        env=installed.env(),
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.splitlines()
    venv = str(installed.bin.parent)
    assert all(line.startswith(venv) for line in out[:3]), out
    assert not Path(out[1]).is_symlink() and (Path(out[1]) / "knowledge" / "orders.md").is_file()
    assert int(out[3]) > 0


def test_version_is_the_installed_version(installed: Installed) -> None:
    from importlib.metadata import version

    proc = subprocess.run(
        [str(installed.bin / "relay"), "--version"],
        cwd=installed.workdir,
        env=installed.env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"relay {version('twilio-flex-assist-relay')}"


async def test_serve_answers_health_from_an_empty_folder(installed: Installed) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(installed.bin / "relay"),
        "serve",
        cwd=installed.workdir,
        env=installed.env(RELAY_PORT=str(port), RELAY_HOST="127.0.0.1"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = asyncio.get_running_loop().time() + 60 * TIME_SCALE
        status = None
        async with aiohttp.ClientSession() as session:
            while status != 200 and proc.returncode is None:
                assert asyncio.get_running_loop().time() < deadline, "relay serve never answered /healthz"
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        status = response.status
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        assert status == 200
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60 * TIME_SCALE)
    assert proc.returncode == 0, err.decode()
    log = err.decode()
    assert '"origin":"bundled"' in log and "Traceback" not in log
    # Call records work with no setup: a SQLite file under ./data, migrated at startup.
    assert (installed.workdir / "data" / "relay.db").is_file() and f'"schema":{store_sqlite.LATEST}' in log


async def test_demo_prints_suggestions_from_an_empty_folder(installed: Installed) -> None:
    # A real-looking key in the environment must not switch the offline demo to OpenAI.
    before = sorted(os.listdir(installed.workdir))  # `relay serve` keeps its records in ./data
    proc = await asyncio.create_subprocess_exec(
        str(installed.bin / "relay"),
        "demo",
        "--fast",
        "--port",
        "0",
        cwd=installed.workdir,
        env=installed.env(OPENAI_API_KEY="sk-test-not-used"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=180 * TIME_SCALE)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "offline engine" in text and "→ suggestion:" in text and "call ended: close 1000" in text
    assert sorted(os.listdir(installed.workdir)) == before  # the demo writes nothing into the user's folder
