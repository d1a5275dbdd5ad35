"""cave_jax.runs.llm_trend: simulated LLMs, the fit on older models, and real feature files."""

import os

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.data import capabilities
from cave_jax.runs import llm_trend
from configs import llm_trend as config_module

from .helpers import naive_mutual_knn



@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("llm"))
  config = config_module.get_config("smoke")  # the default world: the tiny one is too coarse
  config.n = 400
  return llm_trend.run(config, workdir), workdir


def _fit(result, k, bench):
  return next(f for f in result["fits"] if (f["k"], f["benchmark"]) == (k, bench))


def test_every_model_is_scored_and_the_fit_reported(small_run):
  result, workdir = small_run
  assert len(result["models"]) == 36 and len(result["rows"]) == 36
  assert {m["set"] for m in result["models"]} == {"older", "newer"}
  assert {f["benchmark"] for f in result["fits"]} == {"gsm8k", "arc", "mmlu", "logiqa2",
                                                      "mean"}
  for m in result["rows"]:
    assert m["chance"] == pytest.approx(10 / 399) and m["ci_low"] <= m["score"] <= m["ci_high"]
  fit = _fit(result, 10, "mean")
  # simulated: quality follows capability for older models, is flat for newer ones
  assert fit["slope"] > 0 and fit["r2_older"] > 0.5 and fit["r2_newer"] < fit["r2_older"]
  assert fit["bias_newer"] < 0
  # uncertainty of the fit: R^2 interval, prediction intervals, who falls outside
  assert fit["r2_older_ci_low"] < fit["r2_older_ci_high"]
  assert len(fit["predictions"]) == fit["n_newer"] == 12
  for p in fit["predictions"]:
    assert p["pi_low"] < p["predicted"] < p["pi_high"]
    want = ("above" if p["observed"] > p["pi_high"] else
            "below" if p["observed"] < p["pi_low"] else None)
    assert p["outside"] == want
  assert fit["outside"] == [p["model"] for p in fit["predictions"] if p["outside"]]
  assert fit["n_outside"] > fit["expected_outside"]  # the newer models leave the trend
  band = fit["band"]
  assert len(band["capability"]) == len(band["low"]) == len(band["high"]) == 50
  assert all(lo < hi for lo, hi in zip(band["low"], band["high"]))
  for row in result["rows"]:
    assert row["ceiling"] == 1.0 and 0 < row["normalised"] < 1
    assert row["normalised_ci_low"] <= row["normalised"] <= row["normalised_ci_high"]
  assert "outside the 95% prediction interval" in llm_trend.summary(result)
  assert sorted(os.listdir(workdir)) == [f"llm_trend.{e}" for e in ("csv", "json", "pdf", "png")]


def _feature_table(tmp_path):
  rng = np.random.default_rng(0)
  vision = rng.normal(size=(500, 12)).astype(np.float32)
  feats = {"copy": vision.copy(),
           "close": vision + 0.3 * rng.normal(size=vision.shape).astype(np.float32),
           "far": vision + 1.5 * rng.normal(size=vision.shape).astype(np.float32),
           "random": rng.normal(size=(500, 12)).astype(np.float32)}
  np.save(tmp_path / "vision.npy", vision)
  lines = ["# test table", "model,release_date,gsm8k,arc,features"]
  for i, (name, x) in enumerate(feats.items()):
    np.save(tmp_path / f"{name}.npy", x)
    lines.append(f"{name},202{i}-01-01,{90 - 20 * i},{80 - 10 * i},{name}.npy")
  (tmp_path / "models.csv").write_text("\n".join(lines) + "\n")
  config = config_module.get_config("features")
  config.update(dict(capabilities=str(tmp_path / "models.csv"), benchmarks="gsm8k,arc",
                     vision_features=str(tmp_path / "vision.npy"), split_date="2022-01-01",
                     n_boot=200, n_perm=20))
  return config


def test_feature_files_identical_and_independent_models(tmp_path):
  result = llm_trend.run(_feature_table(tmp_path), str(tmp_path / "out"))
  by = {m["model"]: m for m in result["rows"]}
  assert by["copy"]["score"] == 1.0 and by["copy"]["p_value"] == pytest.approx(1 / 21)
  assert by["copy"]["set"] == "older" and by["random"]["set"] == "newer"
  random = by["random"]
  assert random["ci_low"] <= random["chance"] <= random["ci_high"]
  assert random["p_value"] > 0.05 and abs(random["calibrated"]) < 3 * random["null_std"]
  assert by["copy"]["score"] > by["close"]["score"] > by["far"]["score"]
  # the ceiling is the vision model with itself: the copy normalises to 1, the
  # independent model to about 0
  assert by["copy"]["normalised"] == pytest.approx(1.0)
  assert random["normalised_ci_low"] <= 0.0 <= random["normalised_ci_high"]
  assert by["close"]["normalised"] > by["far"]["normalised"] > random["normalised"]


def test_bad_tables_are_named(tmp_path):
  path = tmp_path / "t.csv"
  path.write_text("model,release_date,gsm8k\nm1,2023-13-01,5\n")
  with pytest.raises(errors.FeatureFileError, match=r"t.csv line 2: release_date"):
    capabilities.read_capabilities(str(path), ("gsm8k",))
  path.write_text("model,release_date\nm1,2023-01-01\n")
  with pytest.raises(errors.FeatureFileError, match="missing column"):
    capabilities.read_capabilities(str(path), ("gsm8k",))
  config = _feature_table(tmp_path)
  config.split_date = "2030-01-01"
  with pytest.raises(errors.ConfigError, match="0 newer"):
    llm_trend.run(config, str(tmp_path / "out"))


def test_every_k_is_scored_and_fitted_against_brute_force(tmp_path):
  config = _feature_table(tmp_path)
  config.update(dict(ks=(1, 4), n_perm=0, figure=False))
  result = llm_trend.run(config, str(tmp_path / "out"))
  vision = np.load(tmp_path / "vision.npy")
  for k in (1, 4):
    for name in ("close", "random"):
      naive = naive_mutual_knn(vision, np.load(tmp_path / f"{name}.npy"), k)
      row = next(r for r in result["rows"] if (r["model"], r["k"]) == (name, k))
      assert row["score"] == pytest.approx(naive)
    older = [r for r in result["rows"] if r["k"] == k and r["set"] == "older"]
    x = [90, 70]  # gsm8k of copy and close, the older models
    slope = (older[1]["score"] - older[0]["score"]) / (x[1] - x[0])
    assert _fit(result, k, "gsm8k")["slope"] == pytest.approx(slope)
