"""Neighbour browser budget: report size and first paint in Chromium for 500 queries, k = 10.

Builds the report of the synthetic paired world (N = 262,144 by default, the scale
sweep's largest gallery, so few neighbours repeat and nearly every shown row needs its own
thumbnail) with a natural photograph crop for every row (sklearn's two bundled sample
photos, a different random crop per row: the thumbnails compress like real images, not
like flat toy shapes) and a 60-character caption per row, then opens it from file:// in
headless Chromium several times. Prints the markdown table that README quotes, with
this command line. Budget (the report's design target): <= 25 MB, first paint < 2 s.

  python -m benchmarks.browse_budget
  python -m benchmarks.browse_budget --n=65536 --queries=500 --loads=5

Needs chromium + chromedriver on PATH (.ci/install_browser.sh) and selenium.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from cave_jax import browse
from cave_jax.browse import rows as rows_lib
from cave_jax.data import synthetic


def photo_crops(seed: int = 0):
  """row -> uint8 [h, w, 3]: a random crop (64..400 px, any aspect) of a sample photograph."""
  from sklearn.datasets import load_sample_images  # pylint: disable=import-outside-toplevel
  photos = load_sample_images().images

  def crop(row: int) -> np.ndarray:
    rng = np.random.default_rng([seed, row])
    photo = photos[row % len(photos)]
    h = int(rng.integers(64, 400))
    w = int(min(photo.shape[1], h * rng.uniform(0.6, 1.6)))
    y = int(rng.integers(0, photo.shape[0] - h + 1))
    x = int(rng.integers(0, photo.shape[1] - w + 1))
    out = photo[y:y + h, x:x + w]
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)

  return crop


def build(workdir: str, n: int, queries: int, k: int, thumb: int, candidates: int) -> dict:
  world = synthetic.generate(synthetic.WorldSpec(), n)
  crop = photo_crops()
  words = ["a", "photo", "of", "the", "red", "small", "dog", "on", "grass", "near", "river"]

  def describe(rows):
    out = {}
    for r in rows:
      rng = np.random.default_rng([1, r])
      caption = " ".join(rng.choice(words, 12))[:60]
      out[r] = rows_lib.RowInfo(id=f"sample/{r:09d}", label=int(world.labels[r]),
                                label_name=f"class {int(world.labels[r])}", captions=(caption,),
                                caption_index=0, image=crop(r))
    return out

  start = time.perf_counter()
  result = browse.browse_pool(browse.ArrayPool(world.a, world.b), k=k,
                              sizes=browse.gallery_sizes(n, 1024, 16), candidates=candidates,
                              queries=queries, seed=0, n_boot=200, n_perm=20)
  searched = time.perf_counter()
  written = browse.write(workdir, result, describe,
                         meta={"title": "Budget check", "source": "synthetic world + photo crops",
                               "side_a": "modality a", "side_b": "modality b"},
                         thumb_size=thumb)
  written.update(search_s=searched - start, write_s=time.perf_counter() - searched,
                 data_js=os.path.getsize(os.path.join(workdir, "assets", "data.js")))
  return written


def first_paint(workdir: str, loads: int) -> list[dict]:
  """Fresh headless Chromium per load; FCP and 'cave-browse-ready' in ms from navigation."""
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from tests.browse import browser  # pylint: disable=import-outside-toplevel
  out = []
  for _ in range(loads):
    with browser.open_browser() as driver:
      driver.get(browser.url(workdir))
      for _ in range(200):
        marks = driver.execute_script(
            "return [performance.getEntriesByName('first-contentful-paint')[0], "
            "performance.getEntriesByName('cave-browse-ready')[0]].map(e => e && e.startTime)")
        if all(m is not None for m in marks):
          break
        time.sleep(0.05)
      out.append({"fcp_ms": marks[0], "ready_ms": marks[1], "errors": browser.errors(driver)})
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--n", type=int, default=262_144, help="pool size (synthetic world)")
  parser.add_argument("--queries", type=int, default=500)
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--thumb", type=int, default=96, help="thumbnail box in pixels")
  parser.add_argument("--candidates", type=int, default=2048)
  parser.add_argument("--loads", type=int, default=3, help="page loads to time")
  parser.add_argument("--workdir", default="", help="keep the report here (default: a temp dir)")
  args = parser.parse_args(argv)
  workdir = args.workdir or tempfile.mkdtemp(prefix="browse_budget_")
  try:
    written = build(workdir, args.n, args.queries, args.k, args.thumb, args.candidates)
    loads = first_paint(workdir, args.loads)
  finally:
    if not args.workdir:
      shutil.rmtree(workdir, ignore_errors=True)
  fcp = sorted(l["fcp_ms"] for l in loads)
  ready = sorted(l["ready_ms"] for l in loads)
  print(f"`python -m benchmarks.browse_budget {' '.join(argv or sys.argv[1:])}`\n")
  print("| N | queries | k | thumbs | rows shown (main + density) | report size | files "
        "| data.js | first paint (median of loads) | page ready | console errors |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  print(f"| {args.n:,} | {args.queries} | {args.k} | {args.thumb} px | "
        f"{written['main_rows']:,} + {written['density_rows']:,} | "
        f"{written['bytes'] / 1e6:.1f} MB | {written['files']:,} | "
        f"{written['data_js'] / 1e6:.1f} MB | "
        f"{fcp[len(fcp) // 2]:.0f} ms (max {fcp[-1]:.0f}) | {ready[len(ready) // 2]:.0f} ms | "
        f"{sum(len(l['errors']) for l in loads)} |")
  print(f"\nsearch + score {written['search_s']:.0f} s, thumbnails + report "
        f"{written['write_s']:.0f} s; budget: <= 25 MB, first paint < 2000 ms")


if __name__ == "__main__":
  main()
