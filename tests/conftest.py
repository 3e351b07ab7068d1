"""Shared fixtures: real digits data, a small MLP recipe, trained originals and oracles (seconds)."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="mpl-"))

import pytest
import torch

import obliviate as ob

torch.set_num_threads(int(os.environ.get("OBLIVIATE_THREADS", "2")))


@pytest.fixture(scope="session")
def digits():
    return ob.datasets.load("digits", val_fraction=0.5)


@pytest.fixture(scope="session")
def recipe(digits):
    return ob.Recipe.default_for(digits).replace(epochs=20)


@pytest.fixture(scope="session")
def original(digits, recipe):
    return ob.train(recipe, digits.train, seed=0, progress=False)


@pytest.fixture(scope="session")
def random_split(digits):
    return ob.ForgetSplit.random(digits.train, fraction=0.1, seed=0)


@pytest.fixture(scope="session")
def class_split(digits):
    return ob.ForgetSplit.by_class(digits.train, [3])


def state_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def open_in_chromium(path, screenshot=None, text_of="body"):
    """Open a local HTML file in headless Debian Chromium (Playwright drives it; nothing is downloaded):
    returns (console errors, URLs requested, whether each <img> decoded, the page's text). Skips, with
    the reason, where Chromium or Playwright is missing. ``text_of``: the element whose text is returned."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; make setup does it as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    errors, requests = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.as_uri())
            decoded = page.evaluate(
                "Promise.all([...document.images].map(i => i.decode().then(() => i.naturalWidth > 0, () => false)))"
            )
            text = page.inner_text(text_of)
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return errors, requests, decoded, text
