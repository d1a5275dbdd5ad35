"""Headless Chromium for the report tests (Debian's chromium + chromium-driver via selenium).

``require_browser()`` fails the test when the browser is missing and CI is set (CI=true),
and skips it with the reason otherwise. ``open_browser()`` starts one headless session
that collects the page's console messages (``errors(driver)``).
"""

import contextlib
import importlib.util
import os
import shutil

import pytest


def _paths():
  return (shutil.which("chromium") or shutil.which("chromium-browser"),
          shutil.which("chromedriver"))


def require_browser():
  chromium, driver = _paths()
  problem = None
  if importlib.util.find_spec("selenium") is None:
    problem = "selenium is not installed (pip install -e '.[test]')"
  if not chromium or not driver:
    problem = ("chromium and chromedriver are not on PATH (run .ci/install_browser.sh, or "
               "apt-get install chromium chromium-driver)")
  if problem:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
      pytest.fail(f"CI is set but the report tests cannot run: {problem}")
    pytest.skip(problem)


@contextlib.contextmanager
def open_browser(width=1500, height=1000):
  from selenium import webdriver  # pylint: disable=import-outside-toplevel
  from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel
  chromium, driver_path = _paths()
  options = webdriver.ChromeOptions()
  options.binary_location = chromium
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-extensions", "--no-first-run", f"--window-size={width},{height}"):
    options.add_argument(arg)
  options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
  driver = webdriver.Chrome(service=Service(driver_path), options=options)
  try:
    yield driver
  finally:
    driver.quit()


def errors(driver):
  """Console messages at warning level or above since the last call (read once)."""
  return [entry for entry in driver.get_log("browser")
          if entry.get("level") in ("SEVERE", "WARNING")]


def url(directory, fragment=""):
  return "file://" + os.path.abspath(os.path.join(directory, "index.html")) + fragment
