"""Progress in cost units: the ETA at the first update of a sweep is close to the truth."""

import pytest

from cave_jax.runs import reporting
from cave_jax.runs import scale
from configs import scale as scale_config


class _Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_eta_is_elapsed_times_cost_left_over_cost_done(monkeypatch):
  clock = _Clock()
  monkeypatch.setattr(reporting.time, "perf_counter", clock)
  with reporting.Progress(100.0, "test") as bar:
    assert bar.eta() == float("inf")
    clock.now = 2.0
    bar.add(10.0)  # 10% in 2 s: 18 s left
    clock.now = 4.0
    bar.add(30.0)  # 40% in 4 s: 6 s left
  assert [(t, d, pytest.approx(e)) for t, d, e in bar.history] == [(2.0, 10.0, 18.0),
                                                                   (4.0, 40.0, 6.0)]
  assert bar.describe() == "40% done, ETA 6s"


def test_search_cost_is_per_row_for_small_n_and_quadratic_for_large_n():
  small = reporting.search_cost(2048, 64) / reporting.search_cost(1024, 64)
  large = reporting.search_cost(2 * 2**20, 64) / reporting.search_cost(2**20, 64)
  assert 2.0 < small < 3.0 and 3.9 < large < 4.0
  wide = reporting.search_cost(2**20, 1024) / reporting.search_cost(2**20, 64)
  assert 3.0 < wide < 4.5  # width matters, but a search also selects and rescores


@pytest.mark.parametrize("queries", [0, 1024])
def test_first_eta_of_a_scale_sweep_is_within_a_factor_of_three(tmp_path, monkeypatch, queries):
  """The smoke sweep as a user runs it, with and without the paired queries (whose first
  block also pays for compiling the query searches: with far fewer than the default
  1,024 queries that compilation dominates and the first ETA reads high)."""
  bars = []

  class Recorded(reporting.Progress):
    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      bars.append(self)
  monkeypatch.setattr(reporting, "Progress", Recorded)
  config = scale_config.get_config("smoke")
  config.update(dict(n_perm=5, queries=queries, figure=False))
  config.world.update(dict(n_classes=200, dim_a=16, dim_b=32, hidden_dim=32))
  scale.run(config, str(tmp_path))
  (bar,) = bars
  total = bar.elapsed()
  first_time, first_done, first_eta = bar.history[0]
  assert first_done < 0.5 * bar.total  # the first update comes early
  left = total - first_time
  assert left / 3 <= first_eta <= 3 * left, (first_eta, left, bar.history[:4])
