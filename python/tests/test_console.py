"""The web console in headless Chromium (Debian's `chromium` and `chromium-driver`; scripts/test
installs them) during a rolling upgrade from the previous release to this code: logged in on the
first machine of the plan once it runs this code, it shows each machine's nodes reach the new version in the
plan's order, the not-finalized banner once every node runs it, and no banner after
`shoal upgrade --finalize`; the browser logs no error."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import REPO, bring_down, shoal_bin

pytest.importorskip("selenium", reason="pip install selenium (scripts/test does)")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

PREVIOUS = REPO / "target" / "upgrade" / "shoal-previous"
CONSOLE_PORT = 9920  # the controllers' gRPC port 8920 + 1000
SCREENSHOT_DIR = os.environ.get("SHOAL_CONSOLE_SCREENSHOTS")


def run(binary: str, *args: str, timeout: float = 180) -> str:
    r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def serves_console(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{CONSOLE_PORT}/api/session", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def first_done(binary: str, directory: str):
    """The plan's first machine once its steps reached `recovered`, else None."""
    r = subprocess.run(
        [binary, "upgrade", "--show", "--json", "--dir", directory], capture_output=True, text=True, timeout=30
    )
    if r.returncode != 0:
        return None
    machines = (json.loads(r.stdout) or {}).get("machines") or []
    if machines and "recovered" in machines[0].get("done", []):
        return machines[0]["machine"]
    return None


def browser() -> webdriver.Chrome:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    o = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        o.add_argument(a)
    o.binary_location = chromium
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=o, service=Service(driver))


def versions_shown(page: webdriver.Chrome) -> dict:
    """alias -> (machine, version) as the nodes table shows them now (read in one script: the
    page replaces the rows every 2 s)."""
    rows = page.execute_script(
        "return [...document.querySelectorAll('#nodes tbody tr')]"
        ".map(r => [...r.cells].map(c => c.textContent))"
    )
    return {r[0]: (r[2], r[4]) for r in rows if len(r) >= 5}


def banner(page: webdriver.Chrome) -> str:
    b = page.find_element(By.ID, "banner")
    return b.text if b.is_displayed() else ""


def wait(what: str, cond, timeout: float = 120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def screenshot(page: webdriver.Chrome, name: str) -> None:
    if SCREENSHOT_DIR:
        page.save_screenshot(os.path.join(SCREENSHOT_DIR, name))


def test_the_console_follows_an_upgrade_and_the_finalize():
    if not PREVIOUS.exists():
        pytest.fail(f"{PREVIOUS} is missing: run scripts/build-upgrade-binaries (scripts/test does)")
    current = shoal_bin()
    subnet = f"127.249.{os.getpid() % 250}"
    hosts = [f"{subnet}.{i}" for i in (1, 2, 3)]
    with tempfile.TemporaryDirectory(prefix="shoal-console-") as tmp:
        directory = os.path.join(tmp, "cluster")
        page = None
        try:
            run(str(PREVIOUS), "local", "up", "--dir", directory, "--hosts", ",".join(hosts))
            assert not any(serves_console(h) for h in hosts), "the previous release has no console"
            package = os.path.join(tmp, "next.pkg")
            run(current, "package", "build", "--binary", current, "--out", package)
            version = json.loads(run(current, "build-info"))["version"]
            log = open(os.path.join(tmp, "upgrade.log"), "w+")
            upgrade = subprocess.Popen(
                [current, "upgrade", "--package", package, "--dir", directory],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                # The first machine of the plan once it is done: its controller runs this code
                # and nothing restarts it any more (its agent's restart may replace its nodes).
                first = wait("the first machine upgraded", lambda: first_done(current, directory), 240)
                assert serves_console(first), f"{first} runs this code but serves no console"
                page = browser()
                page.get(f"http://{first}:{CONSOLE_PORT}/console")
                page.find_element(By.ID, "user").send_keys("admin")
                with open(os.path.join(directory, "admin.password")) as f:
                    page.find_element(By.ID, "password").send_keys(f.read().strip())
                page.find_element(By.ID, "submit").click()
                wait("the nodes table", lambda: len(versions_shown(page)) == 9)
                # At which look each machine's nodes all showed the new version. The page shows
                # what its last refresh got: one that was slow (a leader change) can show two
                # machines done at once, a tie; a machine done before one earlier in the plan
                # is not.
                reached = {}
                looks = [0]

                def look() -> bool:
                    looks[0] += 1
                    shown = versions_shown(page)
                    for h in hosts:
                        on = [v for (m, v) in shown.values() if m == h]
                        if h not in reached and on and all(v == version for v in on):
                            reached[h] = looks[0]
                    return len(reached) == len(hosts)

                while upgrade.poll() is None:
                    look()
                    if len(reached) == 1:
                        screenshot(page, "console-upgrade.png")
                    time.sleep(0.25)
                # The page refreshes every 2 s: the last machine shows up within a few looks.
                wait("every machine on the new version", look, 10)
            finally:
                if upgrade.poll() is None:
                    upgrade.kill()
                upgrade.wait()
                log.seek(0)
                out = log.read()
            assert upgrade.returncode == 0, f"shoal upgrade failed:\n{out}"
            plan = [m["machine"] for m in json.loads(run(current, "upgrade", "--show", "--json", "--dir", directory))["machines"]]
            seen = [reached[h] for h in plan]
            assert seen == sorted(seen), f"machines reached {version} at looks {reached}, the plan was {plan}"

            text = wait("the not-finalized banner", lambda: banner(page), 30)
            assert "Not finalized" in text and version in text and "--finalize" in text, text
            screenshot(page, "console-not-finalized.png")
            run(current, "upgrade", "--finalize", "--dir", directory)
            wait("the banner to go", lambda: banner(page) == "", 30)
            errors = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, f"the browser logged errors: {errors}"
        finally:
            if page is not None:
                page.quit()
            bring_down(current, directory)
