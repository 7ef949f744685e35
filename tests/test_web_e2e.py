"""The playground driven in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, installed by `make browser`) through selenium, against a real `rmmc web`.

Scenario: paste the RemotePC seed, pick Splunk, see it refused for the fields Sysmon lacks, allow
them, see the SPL, copy it and download the file `rmmc
translate -o` writes; type a syntax error, see it marked at its line and column; remove it,
read the explanation, run verify, see "agree".  A screenshot of the
page is saved under tests/_artifacts/.  Skips with the reason where the browser is missing.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import rmmc
from rmmc.cli import main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "_artifacts"
SEED = (REPO / "rules" / "rmm_remotepc_netconn.txt").read_text(encoding="utf-8")
WAIT = 120  # seconds: a cold server's workers warm up first, on a shared machine
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,900"]


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"chromium not found ({CHROMIUM}); `make browser` installs it"
    if not Path(CHROMEDRIVER).is_file():
        return f"chromedriver not found ({CHROMEDRIVER}); `make browser` installs it"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


pytestmark = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="rmmc-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    # downloads land in `downloads` without a prompt (headless Chromium holds them otherwise)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_paste_pick_splunk_see_error_verify_agree(browser, playground_server, downloads, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, WAIT)
    find = browser.find_element
    browser.get(playground_server.url)
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))

    # Paste the seed (inserted as a paste is: one edit, one input event), pick Splunk.
    source = find(By.ID, "source")
    source.click()
    browser.execute_script("arguments[0].focus(); document.execCommand('insertText', false, arguments[1]);",
                           source, SEED)
    assert source.get_property("value") == SEED
    Select(find(By.ID, "target")).select_by_value("splunk")
    # The Sysmon environment has no version information in network events: refused, saying so.
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#translations .status").text == "refused")
    assert any("InitiatingProcessVersionInfoCompanyName" in li.text
               for li in browser.find_elements(By.CSS_SELECTOR, "#diagnostics li.error"))
    find(By.ID, "allow-unknown-fields").click()  # written anyway, with warnings
    expected = rmmc.translate(SEED, to="splunk", allow_unknown_fields=True)
    output = wait.until(lambda d: _output_text(d, "search `sysmon` earliest=-5d"))
    assert output == expected.rules[0].text
    assert find(By.CSS_SELECTOR, "#translations .status").text == "exact"
    assert find(By.ID, "kind").text == "hunt document"
    download = find(By.CSS_SELECTOR, "#downloads a.download")
    name = "Remote_Management_and_Monitoring_tool_-_RemotePC_-_Network_Connection.spl"
    assert download.get_attribute("download") == name
    download.click()
    saved = downloads / name
    wait.until(lambda d: saved.is_file() and saved.stat().st_size > 0)
    written = CliRunner().invoke(main, ["translate", str(REPO / "rules" / "rmm_remotepc_netconn.txt"),
                                        "--to", "splunk", "--allow-unknown-fields", "-o", str(tmp_path / "cli")])
    assert written.exit_code == 0, written.output
    assert saved.read_bytes() == (tmp_path / "cli" / name).read_bytes()
    # Copy puts the translation on the clipboard.
    browser.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": playground_server.url.rstrip("/"), "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    find(By.ID, "copy").click()
    wait.until(lambda d: d.find_element(By.ID, "copied").text == "copied")
    clipboard = browser.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], (e) => arguments[0]('failed: ' + e))")
    assert clipboard == expected.text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "playground-splunk.png"))

    # Type a syntax error: a second `has_any` on line 10, right after the first.
    line10 = "and InitiatingProcessVersionInfoProductName has_any ("
    at = SEED.index(line10) + len(line10) - 1  # before the "("
    browser.execute_script("arguments[0].focus(); arguments[0].setSelectionRange(arguments[1], arguments[1]);",
                           source, at)
    ActionChains(browser).send_keys("has_any ").perform()  # typed where the caret is
    assert source.get_property("value") == SEED[:at] + "has_any " + SEED[at:]
    mark = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#highlights mark.error"))[0]
    assert (mark.get_attribute("data-line"), mark.get_attribute("data-column")) == ("10", "53")
    assert browser.execute_script("return arguments[0].textContent", mark) == "has_any"
    # the mark sits on line 10 of the editor: 9 lines below the first, at column 53
    geometry = browser.execute_script("""
        const m = arguments[0].getBoundingClientRect(), h = document.getElementById('highlights');
        const top = h.getBoundingClientRect().top, left = h.getBoundingClientRect().left;
        const style = getComputedStyle(h), line = parseFloat(style.lineHeight), pad = parseFloat(style.paddingTop);
        const probe = document.createElement('span'); probe.textContent = 'x'.repeat(52);
        probe.style.font = style.font; probe.style.whiteSpace = 'pre'; probe.style.position = 'absolute'; document.body.append(probe);
        const width = probe.getBoundingClientRect().width; probe.remove();
        return [(m.top - top - pad) / line, m.left - left - parseFloat(style.paddingLeft) - width];
    """, mark)
    assert abs(geometry[0] - 9) < 0.25 and abs(geometry[1]) < 2, geometry
    item = find(By.CSS_SELECTOR, "#diagnostics li.error")
    assert "10:53" in item.text and "expected '(' after has_any, found 'has_any'" in item.text
    assert find(By.CSS_SELECTOR, "#translations .status").text == "refused"
    assert "Refused" in find(By.CSS_SELECTOR, "#translations .banner.refused").text
    browser.save_screenshot(str(ARTIFACTS / "playground-error.png"))

    # Remove it again, then run verify: every engine here agrees.
    ActionChains(browser).send_keys(Keys.BACKSPACE * len("has_any ")).perform()
    assert source.get_property("value") == SEED
    wait.until(lambda d: _output_text(d, "search `sysmon` earliest=-5d"))
    find(By.ID, "tab-explain").click()
    explained = wait.until(lambda d: [p.text for p in d.find_elements(By.CSS_SELECTOR, "#explanation pre.output")
                                      if "stale" not in (d.find_element(By.ID, "explanation").get_attribute("class") or "")])
    assert "RemoteUrl has the term 'remotepc.com' [case-insensitive]" in explained[0]
    find(By.ID, "tab-verify").click()
    find(By.ID, "run-verify").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#verdicts tr[data-target]"))
    verdicts = {row.get_attribute("data-target"): row.find_element(By.CSS_SELECTOR, ".status").text
                for row in browser.find_elements(By.CSS_SELECTOR, "#verdicts tr[data-target]")}
    assert verdicts == {"sigma": "agree", "kql": "agree", "eql": "agree", "splunk": "unchecked", "esql": "unchecked"}
    browser.save_screenshot(str(ARTIFACTS / "playground-verify.png"))
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def _output_text(driver, start: str) -> str | None:
    """The translation pane's text once it shows a translation starting with `start`."""
    from selenium.webdriver.common.by import By

    for pre in driver.find_elements(By.CSS_SELECTOR, "#translations pre.output"):
        text = driver.execute_script("return arguments[0].textContent", pre)
        if text.startswith(start) and "stale" not in (driver.find_element(By.ID, "translations").get_attribute("class") or ""):
            return text
    return None
