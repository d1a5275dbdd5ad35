"""The report in a real headless Chromium: loads from file://, shows what browse.json holds.

One toy report (thumbnails, captions, many-to-many markers) and one synthetic report (no
pixels) are written once; one browser session drives both. The checks read the page the
way a user sees it (rows, columns, highlighted tiles) and compare with browse.json.
"""

import json
import os
import time

import pytest

from cave_jax.runs import browse as browse_run
from configs import browse as browse_config
from tests.browse import browser


@pytest.fixture(scope="module")
def toy_report(tmp_path_factory):
  browser.require_browser()
  workdir = str(tmp_path_factory.mktemp("toy_report"))
  config = browse_config.get_config("toy,smoke")
  config.update(dict(queries=40, n_boot=50, n_perm=10))
  browse_run.run(config, workdir)
  with open(os.path.join(workdir, "browse.json")) as f:
    return workdir, json.load(f)


@pytest.fixture(scope="module")
def driver():
  browser.require_browser()
  with browser.open_browser() as session:
    yield session


@pytest.fixture()
def page(driver, toy_report):
  workdir, data = toy_report
  driver.get("about:blank")
  driver.get(browser.url(workdir))
  _wait(driver, lambda: len(_rows(driver)) > 0)
  return driver, data, workdir


def _wait(driver, condition, timeout=10.0):
  end = time.time() + timeout
  while time.time() < end:
    if condition():
      return
    time.sleep(0.05)
  raise AssertionError("the page did not reach the expected state in time")


def _rows(driver):
  return driver.find_elements("css selector", "#queries tbody tr")


def _attr(elements, name, cast=int):
  return [cast(e.get_attribute(name)) for e in elements]


def _click_query(driver, row):
  driver.find_element("css selector", f'#queries tbody tr[data-row="{row}"]').click()
  _wait(driver, lambda: driver.execute_script("return location.hash") == f"#row={row}")


def test_report_loads_from_file_with_no_console_errors(page):
  driver, data, workdir = page
  assert driver.current_url.startswith("file://")
  assert browser.errors(driver) == []
  assert driver.find_element("id", "title").text == data["meta"]["title"]
  paint = driver.execute_script(
      "return performance.getEntriesByName('first-contentful-paint')[0].startTime")
  assert paint > 0
  # every image in view has loaded (no broken thumbnail)
  in_view = ("[...document.images].filter(i => { const r = i.getBoundingClientRect(); "
             "return r.width > 0 && r.top < innerHeight && r.bottom > 0; })")
  assert driver.execute_script(f"return {in_view}.length") > 10
  _wait(driver, lambda: driver.execute_script(f"return {in_view}.every(i => i.complete)"))
  broken = driver.execute_script(f"return {in_view}.filter(i => i.naturalWidth === 0)"
                                 ".map(i => i.src)")
  assert broken == []


def test_query_list_has_one_row_per_query(page):
  driver, data, _ = page
  rows = _rows(driver)
  assert len(rows) == len(data["queries"]) == 40
  assert _attr(rows, "data-row") == [q["row"] for q in data["queries"]]  # by overlap, lowest first
  assert driver.find_element("id", "count").text == "40 of 40 queries"


def _shown(overlap):
  """An expected overlap as the page writes it: at most two decimals, no trailing zeros."""
  return "%g" % round(overlap, 2)


def test_report_data_has_ties_and_fractional_overlaps(toy_report):
  # The toy dataset repeats images (several captions each) and captions: its lists tie,
  # so the checks below see expected overlaps and partly shared neighbours.
  _, data = toy_report
  assert any(not float(q["overlap"][-1]).is_integer() for q in data["queries"])
  assert any(0 < x < 1 for q in data["queries"] for x in q["xa"][-1] + q["xb"][-1])


def test_clicking_a_query_shows_its_2k_neighbours_and_overlap_as_in_the_json(page):
  driver, data, _ = page
  k = data["meta"]["k"]
  for q in (data["queries"][0], data["queries"][20], data["queries"][-1]):
    _click_query(driver, q["row"])
    for side in ("a", "b"):
      items = driver.find_elements("css selector", f"#neighbours-view .col-{side} .nb")
      assert _attr(items, "data-row") == q[side][-1]
      assert _attr(items, "data-relation", str) == list(q["r" + side][-1])
      # shared for every tie-breaking (x = 1) / only for some (0 < x < 1: tied on the
      # other side), as browse.json says; the sure ones are in both shown lists
      sure = [r for r, x in zip(q[side][-1], q["x" + side][-1]) if x == 1]
      maybe = [r for r, x in zip(q[side][-1], q["x" + side][-1]) if 0 < x < 1]
      shared = driver.find_elements("css selector", f"#neighbours-view .col-{side} .nb.shared")
      assert _attr(shared, "data-row") == sure
      assert set(sure) <= set(q["a"][-1]) & set(q["b"][-1])
      assert _attr(driver.find_elements(
          "css selector", f"#neighbours-view .col-{side} .nb.maybe"), "data-row") == maybe
    assert f"{_shown(q['overlap'][-1])} / {k}" in driver.find_element("id", "query-head").text
    assert data["rows"][str(q["row"])]["id"] in driver.find_element("id", "query-head").text
  assert browser.errors(driver) == []


def test_sorting_by_overlap_and_by_id(page):
  driver, data, _ = page
  header = lambda key: driver.find_element("css selector", f'#queries th[data-key="{key}"]')
  overlap = {q["row"]: q["overlap"][-1] for q in data["queries"]}
  header("overlap").click()
  shown = _attr(_rows(driver), "data-row")
  assert [overlap[r] for r in shown] == sorted(overlap.values(), reverse=True)
  assert header("overlap").get_attribute("aria-sort") == "descending"
  header("overlap").click()
  assert [overlap[r] for r in _attr(_rows(driver), "data-row")] == sorted(overlap.values())
  header("id").click()
  ids = [data["rows"][str(r)]["id"] for r in _attr(_rows(driver), "data-row")]
  assert ids == sorted(ids) and len(ids) == 40


def test_filtering_by_text_overlap_and_class(page):
  driver, data, _ = page
  def text(q):
    info = data["rows"][str(q["row"])]
    return " ".join([info["id"], info["label_name"] or "", *info["captions"]]).lower()

  box = driver.find_element("id", "search")
  box.send_keys("red")
  want = [q["row"] for q in data["queries"] if "red" in text(q)]
  assert 0 < len(want) < 40
  assert sorted(_attr(_rows(driver), "data-row")) == sorted(want)
  assert driver.find_element("id", "count").text == f"{len(want)} of 40 queries"
  box.clear()
  box.send_keys(" ")  # an input event with no terms: everything again
  assert len(_rows(driver)) == 40
  from selenium.webdriver.support.ui import Select  # pylint: disable=import-outside-toplevel
  Select(driver.find_element("id", "overlap-min")).select_by_value("2")
  want = [q["row"] for q in data["queries"] if q["overlap"][-1] >= 2]
  assert sorted(_attr(_rows(driver), "data-row")) == sorted(want)
  Select(driver.find_element("id", "overlap-min")).select_by_value("0")
  label = data["rows"][str(data["queries"][0]["row"])]["label"]
  Select(driver.find_element("id", "class-filter")).select_by_value(str(label))
  want = [q["row"] for q in data["queries"] if data["rows"][str(q["row"])]["label"] == label]
  assert sorted(_attr(_rows(driver), "data-row")) == sorted(want)


def test_density_view_shows_every_nested_gallery(page):
  driver, data, workdir = page
  k, sizes = data["meta"]["k"], data["meta"]["sizes"]
  q = data["queries"][len(data["queries"]) // 2]
  _click_query(driver, q["row"])
  driver.find_element("css selector", '#tabs button[data-tab="density"]').click()
  assert driver.find_element("id", "density-view").is_displayed()
  assert not driver.find_element("id", "neighbours-view").is_displayed()
  levels = driver.find_elements("css selector", "#density-view .level")
  assert _attr(levels, "data-n") == sizes and len(sizes) >= 3
  for s, level in enumerate(levels):
    assert float(level.get_attribute("data-overlap")) == q["overlap"][s]
    assert f"overlap {_shown(q['overlap'][s])} / {k}" in level.text
    for side in ("a", "b"):
      tiles = level.find_elements("css selector", f".strip-{side} .tile")
      assert len(tiles) == k and _attr(tiles, "data-row") == q[side][s]
      for cls, keep in (("shared", lambda x: x == 1), ("maybe", lambda x: 0 < x < 1)):
        marked = level.find_elements("css selector", f".strip-{side} .tile.{cls}")
        assert _attr(marked, "data-row") == [r for r, x in zip(q[side][s], q["x" + side][s])
                                             if keep(x)]
  path = os.path.join(workdir, "density.png")
  assert driver.save_screenshot(path) and os.path.getsize(path) > 10_000


def test_keyboard_and_link_select_a_query(page):
  driver, data, workdir = page
  first, second = data["queries"][0]["row"], data["queries"][1]["row"]
  assert driver.execute_script("return location.hash") == f"#row={first}"
  driver.find_element("tag name", "body").send_keys("\ue015")  # arrow down
  _wait(driver, lambda: driver.execute_script("return location.hash") == f"#row={second}")
  target = data["queries"][-1]
  driver.get(browser.url(workdir, f"#row={target['row']}"))
  _wait(driver, lambda: len(driver.find_elements("css selector", "#neighbours-view .nb")) > 0)
  assert _attr(driver.find_elements("css selector", "#neighbours-view .col-a .nb"),
               "data-row") == target["a"][-1]


def test_screenshot_is_saved_under_the_workdir(page):
  driver, _, workdir = page
  path = os.path.join(workdir, "screenshot.png")
  assert driver.save_screenshot(path)
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(path) > 50_000  # a rendered page, not a blank one
  assert browser.errors(driver) == []


def test_synthetic_report_without_pixels_loads_cleanly(driver, tmp_path):
  config = browse_config.get_config("smoke")
  config.update(dict(n=1500, candidates=200, queries=25, n_boot=30, n_perm=5))
  browse_run.run(config, str(tmp_path))
  driver.get(browser.url(str(tmp_path)))
  _wait(driver, lambda: len(_rows(driver)) == 25)
  assert driver.execute_script("return document.images.length") == 0
  assert len(driver.find_elements("css selector", "#neighbours-view .nb")) == 2 * 10
  assert "scene" in driver.find_element("id", "query-head").text
  assert browser.errors(driver) == []
