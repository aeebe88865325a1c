"""`difflab report`: one self-contained page per run, and a real browser opening it (and the docs' index).

The browser is Debian's chromium with chromium-driver, driven by selenium; nothing downloads a browser. Without them
the browser tests skip, except under CI (`CI` set), where a missing browser is a failure.
"""

import base64
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

import difflab as dl
from difflab.app.report import NAME
from difflab.app.run import Run
from difflab.cli import app
from difflab.config import load_config

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "runs_5b44d08"
TINY = {"name": "tiny", "data": {"name": "digits"},
        "model": {"kind": "unet", "channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1},
        "diffusion": {"path": "ddpm_linear", "T": 50},
        "train": {"steps": 6, "batch_size": 20, "checkpoint_every": 3, "log_every": 1, "device": "cpu"},
        "sample": {"sampler": "ddim", "steps": 4}}


class Page(HTMLParser):
    """What a page holds: its images' sources, its links, its element ids, scripts and external resources."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.ids, self.scripts, self.external = [], [], [], 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if re.match(r"^(https?:)?//", a.get(key) or ""):
                self.external.append(a[key])


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "tiny"
    dl.training.train(load_config(TINY), folder, progress=False)
    return folder


def test_the_report_shows_the_run_and_holds_everything_itself(trained):
    (trained / "eval.md").write_text("| metric | value |\n|---|---|\n| fd | 1.5 |\n")
    r = runner.invoke(app, ["report", str(trained), "--n", "8"])
    assert r.exit_code == 0, r.output
    page_file = trained / NAME
    text = page_file.read_text()
    page = parse(page_file)
    for part in ("What this run is", "Training", "Samples", "Evaluations", "Checkpoints", "Configuration"):
        assert f">{part}</h2>" in text, part
    assert page.scripts == 0 and page.external == [], "a report fetches nothing and runs nothing"
    assert "<td>fd</td>" in text  # the evaluation's markdown table became a table
    assert text.count("<svg") == 2  # loss and learning rate
    assert 'name="viewport"' in text
    # the samples and the animation are inline PNG / GIF that decode, the grid holding the 8 samples
    from io import BytesIO

    from PIL import Image

    kinds = []
    for src in page.images:
        mime, data = re.match(r"data:(image/\w+);base64,(.*)", src).groups()
        im = Image.open(BytesIO(base64.b64decode(data)))
        kinds.append((mime, getattr(im, "n_frames", 1)))
    assert ("image/png", 1) in kinds and any(m == "image/gif" and frames >= 3 for m, frames in kinds)  # one frame per step (4)
    state = Run.open(trained).state
    assert f"<td>{state['step']}</td>" in text  # the newest checkpoint's step


def test_a_report_without_samples_draws_nothing_and_a_stage_links_its_runs(tmp_path):
    for name in ("base", "sr", "cascade"):
        shutil.copytree(FIXTURES / name, tmp_path / name)
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        assert runner.invoke(app, ["report", "base", "--no-samples"]).exit_code == 0
        r = runner.invoke(app, ["report", "cascade", "--n", "4"])
        assert r.exit_code == 0, r.output
    finally:
        os.chdir(old)
    base = parse(tmp_path / "base" / NAME)
    assert base.images == []  # nothing drawn, and the old folder holds no pictures
    cascade = parse(tmp_path / "cascade" / NAME)
    assert "../base/report.html" in cascade.links  # a stage with a report is linked
    assert "difflab report sr" in (tmp_path / "cascade" / NAME).read_text()  # one without says how to make it
    assert len(cascade.images) == 1


def test_report_errors_are_one_line(tmp_path):
    r = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "does not exist" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["report", str(FIXTURES / "base"), "--n", "0"])
    assert r.exit_code == 2


# -- in a real browser -----------------------------------------------------------------------------------------

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are missing (./dev test installs them: apt-get install chromium chromium-driver)")
        pytest.skip("no chromium / chromedriver here (apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not look for drivers online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=390,844"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def check_in_browser(driver, page: Path, screenshot: Path) -> None:
    """Open `page`: every image loaded, no console error, no dead link within the site, nothing wider than the
    screen; then save a screenshot."""
    driver.get(page.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80))")
    assert broken == [], broken
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    links = driver.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    for href in links:
        if href.startswith("file://"):
            target = Path(href[len("file://"):].split("#")[0].split("?")[0])
            assert target.exists(), f"dead link on {page.name}: {href}"
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{page.name} is {overflow}px wider than a phone's screen"
    driver.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 1000


def test_the_report_opens_in_a_browser_on_a_phone_screen(browser, trained, tmp_path):
    assert runner.invoke(app, ["report", str(trained), "--n", "16"]).exit_code == 0
    check_in_browser(browser, trained / NAME, tmp_path / "report.png")


def test_the_docs_index_opens_in_a_browser(browser, tmp_path):
    index = ROOT / "docs" / "_build" / "html" / "index.html"
    if not index.exists():
        if os.environ.get("CI"):
            pytest.fail("the documentation was not built (.ci/run builds it with ./dev docs before the tests)")
        pytest.skip("build the docs first: ./dev docs")
    for page in (index, index.parent / "tutorials" / "index.html", index.parent / "api" / "index.html"):
        check_in_browser(browser, page, tmp_path / f"{page.parent.name}.png")


def test_every_public_name_has_a_reference_entry():
    """Each public module has its page in the built site, and each public function and class defined in it an entry."""
    import importlib
    import inspect
    import sys

    site = ROOT / "docs" / "_build" / "html" / "api"
    if not site.exists():
        if os.environ.get("CI"):
            pytest.fail("the documentation was not built (.ci/run builds it with ./dev docs before the tests)")
        pytest.skip("build the docs first: ./dev docs")
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import api_pages
    finally:
        sys.path.pop(0)
    missing = []
    for name in api_pages.modules():
        page = site / f"{name}.html"
        if not page.exists():
            missing.append(f"{name} (no page)")
            continue
        text = page.read_text(encoding="utf-8")
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", None) == name and f'id="{name}.{attr}"' not in text:
                missing.append(f"{name}.{attr}")
    assert missing == [], missing
