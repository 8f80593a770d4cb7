"""`llmcloud console` on a running local stack (two replicas of a tiny generated model, the
real `llmcloud-server`), driven in headless Chromium: refuse a wrong admin key, log in, see
two ready replicas, create a key and use it, revoke it and see it refused, promote a version
and watch the rollout end on it, see the metrics. A screenshot of each page goes to
tests/screenshots/."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import pytest

from llmcloud.providers.local.procs import free_port
from llmcloud.providers.local.provider import _stop_everything
from llmcloud.providers.local.state import StateFile
from tests.console.browser_support import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, browser_api
from tests.local.conftest import processes_mentioning

playwright_api = browser_api()
pytest.importorskip("torch", reason="the browser tests serve a tiny model with torch")
expect = playwright_api.expect


def _cli(env: dict[str, str], *args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "llmcloud.cli", *args, "--json"], env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


class Deployed:
    """The stack, its keys and the console process serving it."""

    def __init__(self, env, endpoint, key, admin_key, console_url, console_log, model):
        self.env, self.endpoint, self.key, self.admin_key = env, endpoint, key, admin_key
        self.console_url, self.console_log, self.model = console_url, console_log, model


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """`llmcloud up --replicas 2` of a tiny model, an admin key, version v2 uploaded, and
    `llmcloud console` serving the stack; everything stopped afterwards, even on failure."""
    from tests.inference_image.tiny_models import build_causal

    root = tmp_path_factory.mktemp("console-e2e")
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCLOUD_")}
    env.update(LLMCLOUD_HOME=str(home), LLMCLOUD_PROJECT_DIR=str(root),
               LLMCLOUD_SERVER__PORT=str(free_port()), LLMCLOUD_LOCAL_HEALTH_INTERVAL="0.2",
               LLMCLOUD_LOCAL_READY_TIMEOUT="120", LLMCLOUD_LOCAL_OWNER_PID=str(os.getpid()))
    console = None
    try:
        model = build_causal(root / "tiny-llama")
        up = _cli(env, "up", "--model", str(model), "--replicas", "2")
        admin = _cli(env, "keys", "create", "--name", "ops", "--admin")
        _cli(env, "model", "upload", str(build_causal(root / "tiny-llama-v2", hidden_size=32)),
             "--version", "v2")
        port = free_port()
        console_log = root / "console.log"
        with open(console_log, "w") as log:
            console = subprocess.Popen(
                [sys.executable, "-m", "llmcloud.cli", "console", "--port", str(port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert console.poll() is None, console_log.read_text()
            try:
                if httpx.get(url + "/login", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError(f"the console did not start: {console_log.read_text()}")
        served = httpx.get(up["endpoint"] + "/models",
                           headers={"Authorization": f"Bearer {up['api_key']}"}).json()
        yield Deployed(env, up["endpoint"], up["api_key"], admin["key"], url, console_log,
                       served["data"][0]["id"])
    finally:
        if console is not None and console.poll() is None:
            os.killpg(console.pid, signal.SIGTERM)
            try:
                console.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(console.pid, signal.SIGKILL)
        stacks = home / "stacks"
        for stack in stacks.iterdir() if stacks.is_dir() else ():
            _stop_everything(StateFile(stack))
        for pid in processes_mentioning(str(home)):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page(browser, deployed):
    """One logged-in page for the tests that follow each other through the console."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.goto(deployed.console_url + "/")
    tab.fill("#key", deployed.admin_key)
    tab.click("button[type=submit]")
    tab.wait_for_url(deployed.console_url + "/")
    tab.problems = problems
    yield tab
    context.close()


def shot(tab, name: str, **options) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), **options)


def chat(deployed: Deployed, key: str) -> httpx.Response:
    return httpx.post(deployed.endpoint + "/chat/completions", timeout=60,
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": deployed.model, "max_tokens": 8, "temperature": 0,
                            "messages": [{"role": "user", "content": "Hello"}]})


def test_a_wrong_admin_key_is_refused_and_so_is_a_client_key(browser, deployed):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    try:
        tab.goto(deployed.console_url + "/keys")
        assert tab.url.startswith(deployed.console_url + "/login")
        shot(tab, "login")
        tab.fill("#key", "llmc-this-is-not-the-key")
        tab.click("button[type=submit]")
        assert "401" in tab.inner_text("h1")
        assert "What to do" in tab.inner_text("main")
        shot(tab, "refused-401")
        tab.goto(deployed.console_url + "/login")
        tab.fill("#key", deployed.key)
        tab.click("button[type=submit]")
        assert "403" in tab.inner_text("h1")
        assert "keys create --admin" in tab.inner_text("main")
        tab.goto(deployed.console_url + "/")
        assert tab.url.startswith(deployed.console_url + "/login")
    finally:
        context.close()


def test_log_in_and_see_two_ready_replicas(page, deployed):
    page.wait_for_selector("#replicas tbody tr[data-state=ready] >> nth=1")
    assert page.locator("#replicas tbody tr[data-state=ready]").count() == 2
    assert page.inner_text("#health") == "healthy"
    assert page.inner_text("#endpoint") == deployed.endpoint
    assert page.inner_text("#serving-version") == "v1"
    assert deployed.admin_key not in page.content()
    shot(page, "deployment")


def test_create_a_key_use_it_revoke_it_and_see_it_refused(page, deployed):
    page.click("nav >> text=API keys")
    page.wait_for_selector("#key-table")
    page.fill("#key-name", "browser-test")
    page.click("#create-key button[type=submit]")
    key = page.inner_text("#new-key").strip()
    assert key.startswith("llmc-")
    shot(page, "keys", mask=[page.locator("#new-key")], mask_color="#334155")
    assert chat(deployed, key).status_code == 200

    row = page.locator("#key-table tr", has_text="browser-test")
    assert key[:9] in row.inner_text()
    page.reload()
    page.wait_for_selector("#key-table")
    assert key not in page.content()  # shown once: after a reload only its prefix
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#key-table tr", has_text="browser-test").locator("button.revoke").click()
    page.wait_for_selector("#key-table tr:has-text('browser-test')", state="detached")
    assert chat(deployed, key).status_code == 401
    admin_row = page.locator("#key-table tr", has_text="ops")
    assert admin_row.locator("button.revoke").count() == 0


def test_metrics_chart_the_traffic(page, deployed):
    for _ in range(6):
        assert chat(deployed, deployed.key).status_code == 200
    page.click("nav >> text=Metrics")
    # string predicates (wait_for_function) would need eval, which the console's CSP forbids
    for chart in ("requests_per_s", "ttft_p50_s", "ttft_p95_s", "tokens_per_s"):
        expect(page.locator(f"#chart-{chart} .latest")).not_to_have_text("–", timeout=30_000)
    assert page.locator(".chart svg").count() == 5
    shot(page, "metrics")


def test_promote_a_version_and_watch_the_rollout_end_on_it(page, deployed):
    page.click("nav >> text=Models")
    page.wait_for_selector("#versions tr[data-version=v2]")
    shot(page, "models")
    page.click("#versions tr[data-version=v2] button.promote")
    page.wait_for_selector("#confirm-panel")
    assert "Promote v2?" in page.inner_text("#confirm-panel")
    page.click("#confirm-rollout")
    page.wait_for_selector("#rollout [data-state=running], #rollout [data-state=succeeded]")
    page.wait_for_selector("#rollout [data-state=succeeded]", timeout=150_000)
    events = page.inner_text("#rollout .events")
    assert events.count("ready on v2") == 2 and events.count("stopped (v1)") == 2, events
    assert "done: serving v2" in events
    expect(page.locator("#models-serving")).to_have_text("v2")
    shot(page, "rollout", full_page=True)
    status = _cli(deployed.env, "status")
    assert status["model_version"] == "v2"
    assert [r["version"] for r in status["replicas"]] == ["v2", "v2"]
    page.click("nav >> text=Deployment")
    expect(page.locator("#serving-version")).to_have_text("v2")
    expect(page.locator("#replicas tbody tr[data-state=ready]")).to_have_count(2)


def test_no_key_in_the_consoles_output_and_no_page_error(page, deployed):
    output = deployed.console_log.read_text()
    assert deployed.admin_key not in output and deployed.key not in output
    assert "console for stack 'dev'" in output
    # htmx and the pages run under the strict CSP without a single violation
    assert not [p for p in page.problems if "Content Security Policy" in p], page.problems


def test_screenshots_of_every_page_were_saved():
    names = {"login", "refused-401", "deployment", "keys", "metrics", "models", "rollout"}
    assert names <= {p.stem for p in SCREENSHOTS.glob("*.png")}
    shutil.rmtree(SCREENSHOTS / "tmp", ignore_errors=True)
