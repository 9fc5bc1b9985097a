"""A person rates HITs in a real browser (headless Chromium) and `collect` gets exactly their ratings.

The whole path a person takes: invite link -> HIT list -> preview -> accept -> the HIT's own page
in its sandboxed frame -> submit. HITs are published by the project's own publishing code; one
item's generated text carries script and onerror payloads that must show as text and never run.
Needs Debian's chromium and chromedriver (``.ci/run`` installs them) and selenium; skipped without.
"""

from __future__ import annotations

import random
import shutil
import threading
from pathlib import Path

import boto3
import pytest

from mturk_tune.collecting import collect
from mturk_tune.config import replace
from mturk_tune.publishing import plan_publish, publish
from mturk_tune.requester import Endpoint, make_client, resolve_endpoint
from mturk_tune.workspace import init_workspace

pytestmark = pytest.mark.browser
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver")
if not (Path(CHROMIUM).exists() and CHROMEDRIVER):
    pytest.skip("needs Debian's chromium and chromedriver (apt-get install chromium chromium-driver)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

KEY, SECRET = "AKIDBROWSERFLOW", "browser-flow-secret"
PAYLOAD = 'Nice <script>window.__pwned=1</script> and <img src=x onerror="window.__pwned=2"> end'
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def workspace_with_items(root: Path, texts: list[str]):
    """A workspace whose generated texts are written straight into the store (no model needed)."""
    ws = init_workspace(root, model="builtin:tiny")
    items = [{"id": f"item{k}", "prompt_id": f"p{k}", "prompt": f"Prompt {k}", "text": text, "model": "builtin:tiny"}
             for k, text in enumerate(texts)]
    ws.store.add_batch("batch1", 0, "builtin:tiny", {}, items)
    return ws


def rate_hits(browser, home: str, hits: int, rng: random.Random, on_task=None) -> dict[str, int]:
    """From the HIT list at ``home``, preview, accept, rate and submit ``hits`` HITs in turn; returns
    {item id: rating}. The browser stays on the last "Submitted" page."""
    wait = WebDriverWait(browser, 45)
    chosen: dict[str, int] = {}
    for _ in range(hits):
        browser.switch_to.default_content()
        browser.get(home)
        wait.until(EC.element_to_be_clickable((By.LINK_TEXT, "Preview"))).click()
        browser.find_element(By.XPATH, "//button[text()='Accept']").click()
        wait.until(EC.presence_of_element_located((By.XPATH, "//button[text()='Return']")))
        wait.until(EC.frame_to_be_available_and_switch_to_it((By.TAG_NAME, "iframe")))
        wait.until(EC.element_to_be_clickable((By.ID, "submitButton")))  # the page's script filled assignmentId
        for section in browser.find_elements(By.CSS_SELECTOR, "section.item"):
            item_id, value = section.get_attribute("data-item-id"), rng.randint(1, 5)
            section.find_element(By.CSS_SELECTOR, f"input[type=radio][value='{value}']").click()
            chosen[item_id] = value
        if on_task is not None:
            on_task(browser)
        browser.find_element(By.ID, "submitButton").click()
        wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "your answers were recorded"))
    browser.switch_to.default_content()
    return chosen


def signed_in(browser, worker_id: str) -> None:
    """Wait for the HIT list of ``worker_id`` (the invite link redirects there with a cookie)."""
    WebDriverWait(browser, 45).until(EC.text_to_be_present_in_element((By.TAG_NAME, "header"), f"Worker {worker_id}"))


def nothing_ran(browser) -> bool:
    """window.__pwned is unset in the page and in every frame of it."""
    browser.switch_to.default_content()
    frames = browser.find_elements(By.TAG_NAME, "iframe")
    pwned = [browser.execute_script("return typeof window.__pwned")]
    for index in range(len(frames)):
        browser.switch_to.frame(index)
        pwned.append(browser.execute_script("return typeof window.__pwned"))
        browser.switch_to.default_content()
    return pwned == ["undefined"] * (1 + len(frames))


def csp_violations(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]


def test_a_person_rates_published_hits_in_a_browser_and_collect_holds_exactly_those_ratings(tmp_path, browser):
    from mturk_tune.marketplace.server import create_invite, invite_link, run_in_thread

    texts = ["A calm and clear review of a small hotel.", PAYLOAD, "The fox ran home & slept <well>.",
             "Short text number four."]
    ws = workspace_with_items(tmp_path / "ws", texts)
    url, stop = run_in_thread(ws.marketplace_db, credentials={KEY: SECRET})
    try:
        client = boto3.client("mturk", region_name="us-east-1", endpoint_url=url,
                              aws_access_key_id=KEY, aws_secret_access_key=SECRET)
        endpoint = Endpoint(url, url)
        settings = replace(ws.config, "publish", items_per_hit=2, assignments=1, concurrency=1).publish
        published = publish(ws.store, client, endpoint, settings, plan_publish(ws.store, endpoint, settings))
        assert published.created == 2

        browser.delete_all_cookies()
        browser.get(invite_link(url, create_invite(ws.marketplace_db, "ABROWSERFLOW")))
        signed_in(browser, "ABROWSERFLOW")
        assert len(browser.find_elements(By.LINK_TEXT, "Preview")) == 2
        seen_payload = []

        def check_payload(frame_browser) -> None:
            texts_shown = [e.text for e in frame_browser.find_elements(By.CSS_SELECTOR, ".item-text")]
            if PAYLOAD in texts_shown:  # shown verbatim, as text: the markup became no element at all
                seen_payload.append(True)
                assert frame_browser.find_elements(By.CSS_SELECTOR, ".item-text script, .item-text img") == []
                assert frame_browser.execute_script("return typeof window.__pwned") == "undefined"
                frame_browser.find_element(By.NAME, "comment").send_keys("saw <b>markup</b> as text")

        chosen = rate_hits(browser, url + "/", 2, random.Random(3), on_task=check_payload)
        assert seen_payload == [True] and sorted(chosen) == ["item0", "item1", "item2", "item3"]
        assert nothing_ran(browser)
        browser.get(url + "/")
        signed_in(browser, "ABROWSERFLOW")
        assert "Available HITs" in browser.page_source and "Preview" not in browser.page_source

        result = collect(ws.store, client, endpoint)
        assert (result.new_assignments, result.new_ratings, result.parse_errors) == (2, 4, 0)
        ratings = ws.store.ratings_frame()
        assert dict(zip(ratings["task"], ratings["label"])) == {k: float(v) for k, v in chosen.items()}
        assert set(ratings["worker"]) == {"ABROWSERFLOW"}
        raw = [row[0] for row in ws.store.conn.execute("SELECT answer_xml FROM assignments")]
        assert sum("<FreeText>saw &lt;b&gt;markup&lt;/b&gt; as text</FreeText>" in xml for xml in raw) == 1
        assert csp_violations(browser) == []
    finally:
        stop()


def test_the_demo_marketplace_served_to_a_person_stops_when_they_have_done_every_hit(tmp_path, browser):
    from mturk_tune.marketplace.people import serve_to_people

    ws = workspace_with_items(tmp_path / "demo", [f"Demo text {k}" for k in range(6)])
    local = resolve_endpoint("local")  # the demo publishes to the workspace's embedded marketplace
    client = make_client(local, marketplace_db=ws.marketplace_db)
    settings = replace(ws.config, "publish", items_per_hit=3, assignments=1, concurrency=1).publish
    publish(ws.store, client, local, settings, plan_publish(ws.store, local, settings))

    ready, lines, outcome = threading.Event(), [], {}

    def serve() -> None:
        outcome["run"] = serve_to_people(ws.marketplace_db, workers=["ADEMORATER"], port=0, announce=lines.append,
                                         on_ready=lambda url, links: (outcome.update(links=links), ready.set()),
                                         poll_s=0.1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(60)
    assert any(outcome["links"]["ADEMORATER"] in line for line in lines)  # the person is told where to go
    browser.delete_all_cookies()
    browser.get(outcome["links"]["ADEMORATER"])
    signed_in(browser, "ADEMORATER")
    chosen = rate_hits(browser, outcome["links"]["ADEMORATER"].split("/join")[0] + "/", 2, random.Random(5))
    thread.join(60)
    run = outcome["run"]
    assert (run.finished, run.submitted) == (True, 2)

    result = collect(ws.store, client, local)
    assert (result.new_assignments, result.new_ratings) == (2, 6)
    ratings = ws.store.ratings_frame()
    assert dict(zip(ratings["task"], ratings["label"])) == {k: float(v) for k, v in chosen.items()}
    assert csp_violations(browser) == []
