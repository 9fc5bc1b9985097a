"""A real browser works a HIT on the marketplace server: invite, preview, accept, rate, submit.

Checks what only a browser can: the HIT page's script runs inside the sandboxed frame under
the server's CSP, its form posts to turkSubmitTo without the worker's cookie, and the answers
arrive. Needs Debian's chromium and chromedriver (and selenium); skipped without them.
"""

from __future__ import annotations

import shutil

import boto3
import pytest

from mturk_tune.hits import HitItem, html_question, render_hit_page
from mturk_tune.marketplace.documents import parse_answer_xml
from mturk_tune.marketplace.server import create_invite, invite_link, run_in_thread

pytestmark = pytest.mark.browser
webdriver = pytest.importorskip("selenium.webdriver")
if not (shutil.which("chromium") and shutil.which("chromedriver")):
    pytest.skip("needs Debian's chromium and chromedriver", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")),
                              options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_a_worker_rates_a_hit_in_a_real_browser(tmp_path, browser):
    db = tmp_path / "market.db"
    url, stop = run_in_thread(db, credentials={"AKIDBROWSER": "browser-secret"})
    try:
        client = boto3.client("mturk", region_name="us-east-1", endpoint_url=url,
                              aws_access_key_id="AKIDBROWSER", aws_secret_access_key="browser-secret")
        page = render_hit_page([HitItem("i1", "A kind & <helpful> answer"), HitItem("i2", "A rude one")])
        hit_id = client.create_hit(Title="Rate two texts", Description="Rate each text", Reward="0.10",
                                   AssignmentDurationInSeconds=600, LifetimeInSeconds=3600, MaxAssignments=1,
                                   Question=html_question(page))["HIT"]["HITId"]
        wait = WebDriverWait(browser, 15)

        browser.get(invite_link(url, create_invite(db, "ABROWSER")))
        browser.find_element(By.LINK_TEXT, "Preview").click()
        browser.find_element(By.XPATH, "//button[text()='Accept']").click()
        wait.until(EC.presence_of_element_located((By.XPATH, "//button[text()='Return']")))

        wait.until(EC.frame_to_be_available_and_switch_to_it((By.TAG_NAME, "iframe")))
        assert "A kind & <helpful> answer" in browser.find_element(By.CSS_SELECTOR, "[data-item-id=i1] .item-text").text
        browser.find_element(By.CSS_SELECTOR, "input[name=rating__i1][value='5']").click()
        browser.find_element(By.CSS_SELECTOR, "input[name=rating__i2][value='2']").click()
        browser.find_element(By.NAME, "comment").send_keys("clear task, thanks")
        browser.find_element(By.ID, "submitButton").click()
        wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "your answers were recorded"))
        browser.switch_to.default_content()

        [assignment] = client.list_assignments_for_hit(HITId=hit_id)["Assignments"]
        answers = dict(parse_answer_xml(assignment["Answer"]))
        assert assignment["WorkerId"] == "ABROWSER"
        assert (answers["rating__i1"], answers["rating__i2"], answers["comment"]) == ("5", "2", "clear task, thanks")
        violations = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
        assert violations == []
    finally:
        stop()
