"""The web demo in a real browser: `python app.py` on 127.0.0.1, driven by headless Chromium through Selenium.

CI installs Debian's `chromium` and `chromium-driver` (.ci/run); elsewhere the test skips, saying what is missing.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (the dev extra)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "chromium-driver")
STARTUP_TIMEOUT_S = 180  # the app imports torch, transformers and gradio on a busy 2-core machine
ANSWER_TIMEOUT_S = 120

pytestmark = pytest.mark.slow  # a served app and a real browser: tens of seconds, kept out of the fast loop


def _which(names):
    return next((path for path in map(shutil.which, names) if path), None)


@pytest.fixture(scope="module")
def browser():
    binary, driver_path = _which(BROWSERS), _which(DRIVERS)
    if not (binary and driver_path):
        pytest.skip("headless Chromium not found (apt-get install chromium chromium-driver; .ci/run does it)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2000"):
        options.add_argument(argument)  # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def app_url(model_dir, shared_data, tmp_path_factory):
    """The app serving a tiny random model, on a free localhost port, until the module's tests end."""
    # checked here, not on import: importing Gradio takes seconds even where this module's tests are deselected
    pytest.importorskip("gradio", reason="the demo needs the `app` extra: pip install -e '.[app]'")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with log.open("w") as output:
        server = subprocess.Popen([sys.executable, str(REPOSITORY / "app.py"), "--model", str(model_dir), "--host",
                                   "127.0.0.1", "--port", str(port)], env=env, stdout=output, stderr=output)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the app did not start:\n{log.read_text()[-3000:]}")
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def upload_and_analyse(browser, url: str, files, labels: str = "") -> WebDriverWait:
    browser.get(url)
    wait = WebDriverWait(browser, ANSWER_TIMEOUT_S)
    upload = wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]")))
    upload.send_keys("\n".join(str(file) for file in files))
    for file in files:  # the upload finished when every file is listed (Gradio shows the suffix on its own line)
        for part in (Path(file).stem, Path(file).suffix):
            wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "upload"), part))
    if labels:
        browser.find_element(By.CSS_SELECTOR, "#labels textarea").send_keys(labels)
    browser.find_element(By.ID, "analyse").click()
    return wait


def test_the_ptb_record_and_a_radiograph_are_classified_and_drawn_in_a_browser(browser, app_url, shared_data, tmp_path):
    record = shared_data / "ecg" / "s0010_re"
    files = [Path(f"{record}{suffix}") for suffix in (".hea", ".dat", ".xyz")]
    wait = upload_and_analyse(browser, app_url, files, "myocardial infarction, normal sinus rhythm")
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "s0010_re"))
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "probabilities"), "normal sinus rhythm"))
    plot = wait.until(expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, "#ecg-plot img")))
    assert plot.size["width"] > 300  # the ECG paper, drawn
    assert "%" in browser.find_element(By.ID, "probabilities").text
    browser.save_screenshot(str(tmp_path / "app-ecg.png"))

    radiograph = shared_data / "cxr" / "nih_00000001_000.png"
    wait = upload_and_analyse(browser, app_url, [radiograph], "cardiomegaly, pneumonia")
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), radiograph.name))
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "probabilities"), "cardiomegaly"))
    wait.until(expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, "#radiograph img")))
    browser.save_screenshot(str(tmp_path / "app-cxr.png"))
    assert (tmp_path / "app-ecg.png").stat().st_size > 10_000 and (tmp_path / "app-cxr.png").stat().st_size > 10_000


def test_a_bad_upload_shows_a_readable_message_in_the_browser(browser, app_url, shared_data, tmp_path):
    wait = upload_and_analyse(browser, app_url, [shared_data / "README.md"], "a, b")
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "not a file type the demo reads"))
    assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(tmp_path / "app-error.png"))
