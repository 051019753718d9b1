"""The soak's arithmetic: the RSS slope and the report built from samples."""
from streams.bench.soak import report, slope_per_minute


def test_a_line_rising_one_mb_every_ten_seconds_has_a_slope_of_six_mb_per_minute():
    assert slope_per_minute([(0, 100.0), (10, 101.0), (20, 102.0), (30, 103.0)]) == 6.0


def test_a_flat_series_has_a_zero_slope_and_a_single_point_has_none():
    assert slope_per_minute([(0, 5.0), (10, 5.0), (20, 5.0)]) == 0.0
    assert slope_per_minute([(0, 5.0)]) is None
    assert slope_per_minute([(3, 5.0), (3, 6.0)]) is None


def test_the_slope_leaves_out_the_warm_up_fifth_of_the_run():
    samples = [{"t": 0, "rss_mb": {"w": 50.0}, "lag": 9}, {"t": 5, "rss_mb": {"w": 90.0}, "lag": 5}] + [
        {"t": t, "rss_mb": {"w": 100.0}, "lag": 1} for t in (20, 30, 40, 50)]
    result = report(samples, {"w": 1}, minutes=50 / 60, rate=10, probe=None, interval=10, deposits=3, transfers=2,
                    outcomes=5, load_seconds=50)
    assert result["warmup_s"] == 10.0
    assert result["rss"]["w"] == {"first_mb": 50.0, "last_mb": 100.0, "max_mb": 100.0, "slope_mb_per_min": 0.0,
                                  "slope_mb_per_min_last_half": 0.0}
    assert result["lag"] == {"max": 9, "last": 1, "mean_after_warmup": 1.0, "slope_per_min_after_warmup": 0.0,
                             "slope_per_min_last_half": 0.0}
    assert result["commands"] == 5 and result["achieved_rate"] == 0.1


def test_given_rss_that_fills_then_levels_off_then_the_last_half_slope_is_flat_while_the_steady_one_is_not():
    samples = [{"t": t, "rss_mb": {"w": 100.0 + min(t, 300) / 10}, "lag": 0} for t in range(0, 1201, 60)]
    result = report(samples, {"w": 1}, minutes=20, rate=10, probe=None, interval=60, deposits=1, transfers=0,
                    outcomes=1, load_seconds=1200)
    assert result["rss"]["w"]["slope_mb_per_min"] > 0.3
    assert result["rss"]["w"]["slope_mb_per_min_last_half"] == 0.0


def test_given_rss_that_keeps_rising_then_the_last_half_slope_shows_it():
    samples = [{"t": t, "rss_mb": {"w": 100.0 + t / 60}, "lag": 0} for t in range(0, 1201, 60)]
    result = report(samples, {"w": 1}, minutes=20, rate=10, probe=None, interval=60, deposits=1, transfers=0,
                    outcomes=1, load_seconds=1200)
    assert result["rss"]["w"]["slope_mb_per_min_last_half"] == 1.0


def test_given_a_worker_s_rocksdb_figures_then_its_rss_report_gives_their_first_last_and_max():
    samples = [{"t": t, "rss_mb": {"worker-1": 200.0 + t, "broker": 900.0},
                "rocksdb_mb": {"worker-1": float(min(t, 40))} if t != 20 else {}, "lag": 0} for t in (0, 20, 40, 60)]
    result = report(samples, {"worker-1": 1, "broker": 2}, minutes=1, rate=10, probe=None, interval=20,
                    deposits=1, transfers=0, outcomes=1, load_seconds=60)
    worker = result["rss"]["worker-1"]
    assert (worker["rocksdb_first_mb"], worker["rocksdb_last_mb"], worker["rocksdb_max_mb"]) == (0.0, 40.0, 40.0)
    assert "rocksdb_last_mb" not in result["rss"]["broker"]
