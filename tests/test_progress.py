"""Terminal output that explains itself: epoch runs report between their metrics rows (images/s,
eta), a CPU run estimated to take hours says so before it starts, a multirun shows its overall
progress and ends with the aggregate command, and one seed prints no spread."""
import logging
import time
import types

import pytest
from conftest import run_cli

from dlf.drive.progress import Progress, pm, warn_if_slow


def _messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "dlf"]


def _row(step, epoch):
    return {"step": step, "epoch": epoch, "loss": [1.0], "train_acc": [0.5], "val_acc": [0.25]}


def test_epoch_run_heartbeat_between_rows_with_images_per_s_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="dlf")
    p = Progress(steps=1000, epochs=100, batch_size=512, every_s=0, heartbeat_s=0.05)
    time.sleep(0.12)  # before any rate: the first epochs are running
    p(_row(0, 0))
    time.sleep(0.05)
    p(_row(100, 10))  # 10 epochs of 10 steps
    time.sleep(0.2)   # the next chunk: estimated lines
    p.close()
    msgs = _messages(caplog)
    assert any(m.startswith("dlf: training the first epochs") for m in msgs)
    row_line = next(m for m in msgs if m.startswith("epoch  10/100"))
    assert "images/s" in row_line and "eta" in row_line and "steps/s" not in row_line
    beats = [m for m in msgs if m.startswith("epoch ~")]
    assert beats and all("images/s" in m and "eta" in m for m in beats)
    est = [float(m.split("~")[1].split("/")[0]) for m in beats]
    assert all(10 <= e <= 100 for e in est) and est == sorted(est)
    n = len(msgs)
    time.sleep(0.15)
    assert len(_messages(caplog)) == n  # closed: no more lines


def test_before_the_first_chunk_the_heartbeat_uses_the_estimate(caplog):
    caplog.set_level(logging.INFO, logger="dlf")
    p = Progress(steps=70_000, epochs=700, batch_size=512, every_s=0, heartbeat_s=0.05)
    p.expect(7 * 24 * 3600.0)  # a week
    p(_row(0, 0))
    time.sleep(0.12)
    p.close()
    beats = [m for m in _messages(caplog) if m.startswith("epoch ~")]
    assert beats and "estimated from the model size" in beats[0] and "images/s" in beats[0]
    assert "eta 16" in beats[0] and " h" in beats[0]  # ~168 h left


def test_full_batch_runs_keep_steps_per_s_and_no_heartbeat(caplog):
    caplog.set_level(logging.INFO, logger="dlf")
    p = Progress(steps=20, every_s=0)
    assert p._thread is None
    p({"step": 0, "loss": [1.0], "train_acc": [0.5], "val_acc": [0.5]})
    time.sleep(0.01)
    p({"step": 20, "loss": [1.0], "train_acc": [0.5], "val_acc": [0.5]})
    assert "steps/s" in _messages(caplog)[-1]


def _cfg(epochs, seeds=1, max_cpu_hours=None):
    return types.SimpleNamespace(epoch_run=True, seeds=seeds, train=types.SimpleNamespace(
        epochs=epochs, log_every=10, max_cpu_hours=max_cpu_hours))


def test_hours_on_a_cpu_are_announced_with_the_ways_out(caplog):
    import numpy as np

    caplog.set_level(logging.INFO, logger="dlf")
    myrtle5_64 = {"w": np.zeros((1, 113_226))}  # Myrtle5-64's parameter count, one seed
    est = warn_if_slow(_cfg(700), myrtle5_64, 50_000, 10_000, "cpu")
    assert est > 24 * 3600
    (msg,) = [m for m in _messages(caplog) if "estimated to take" in m]
    assert " h on this CPU" in msg and "GPU" in msg and "dataset.subset" in msg and "model.width" in msg
    caplog.clear()
    assert warn_if_slow(_cfg(3), {"w": np.zeros((1, 500))}, 512, 512, "cpu") < 3600
    assert warn_if_slow(_cfg(700), myrtle5_64, 50_000, 10_000, "gpu") is None
    assert not [m for m in _messages(caplog) if "estimated to take" in m]


def test_beyond_a_day_on_a_cpu_is_refused_unless_allowed():
    """Issue 24: the design card's command (Myrtle5 on CIFAR-10) on a CPU started a run estimated at
    thousands of hours after one warning line; beyond train.max_cpu_hours (default 24) it is refused
    in one line with the estimate and the ways out; max_cpu_hours=null runs it (with the warning)."""
    import numpy as np

    from dlf import config as config_lib
    from dlf.errors import ConfigError

    cfg = config_lib.from_dict({"dataset": {"name": "cifar10", "classes": 10}, "seeds": 1,
                                "model": {"name": "myrtle", "depth": 5, "width": 64},
                                "train": {"epochs": 700, "batch_size": 512, "log_every": 10}})
    assert cfg.train.max_cpu_hours == 24
    myrtle5_64 = {"w": np.zeros((1, 113_226))}
    with pytest.raises(ConfigError, match=r"estimated to take ~[\d.]+ h on this CPU .* beyond train.max_cpu_hours=24; "
                                          r"use a GPU, or make it smaller \(dataset.subset=2000, model.width=16"):
        warn_if_slow(cfg, myrtle5_64, 50_000, 10_000, "cpu")
    free = config_lib.replace(cfg, train=dict(max_cpu_hours=None))
    assert warn_if_slow(free, myrtle5_64, 50_000, 10_000, "cpu") > 24 * 3600
    assert warn_if_slow(cfg, myrtle5_64, 50_000, 10_000, "gpu") is None  # a GPU: no CPU estimate
    small = config_lib.replace(cfg, train=dict(epochs=2))
    assert warn_if_slow(small, {"w": np.zeros((1, 500))}, 512, 512, "cpu") < 3600


def test_long_work_is_announced_while_it_runs_and_timed_when_done(caplog):
    """Issue 24: nothing was printed during a 46 s compile. slow_notice says so once the work
    passes its threshold (from a thread, while it runs) and gives the time at the end; quick work
    prints nothing."""
    from dlf.drive.progress import slow_notice

    caplog.set_level(logging.INFO, logger="dlf")
    with slow_notice("compiling the training program", after_s=0.1):
        time.sleep(0.4)
        during = [m for m in _messages(caplog) if "compiling" in m]
    assert during == ["dlf: compiling the training program (0.1 s so far) ..."]
    (done,) = [m for m in _messages(caplog) if "done in" in m]
    assert done.startswith("dlf: compiling the training program: done in 0.")
    caplog.clear()
    with slow_notice("compiling", after_s=5):
        pass
    assert not _messages(caplog)


def test_one_seed_prints_no_spread_and_several_their_95_percent_interval():
    from dlf.outputs import seed_stats

    assert pm(seed_stats([0.5])) == "0.5000"
    s = seed_stats([0.4, 0.5, 0.6])  # mean 0.5, std 0.1, t(0.975, 2) = 4.3027: half-width 0.2484
    assert s["ci95"] == pytest.approx(4.302652729749464 * 0.1 / 3 ** 0.5, rel=1e-9)
    assert pm(s) == "0.5000 ± 0.2484"
    assert pm(seed_stats([None])) == "nan"


def test_the_end_of_a_sweep_names_a_command_that_works_for_it():
    from omegaconf import OmegaConf

    from dlf.drive.progress import next_command

    assert "python -m dlf.aggregate sw" in next_command(OmegaConf.create({"probes": {"hessian": {"every": 0}}}), "sw")
    fig5 = OmegaConf.create({"probes": {"hessian": {"every": 25}}})  # experiment=fig5_grid: thresholds
    assert "python -m dlf.fig5 sw" in next_command(fig5, "sw")


@pytest.mark.slow
def test_multirun_reports_overall_progress_and_the_aggregate_command(tmp_path, tiny):
    base = [o for o in tiny if not o.startswith("seeds=")]
    p = run_cli("-m", *base, "seeds=1", "seed=0,1,2", "hydra.sweep.dir=sw", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    for k in (1, 2, 3):
        assert f"sweep job {k}/3 starting" in out and f"sweep {k}/3 jobs done (0 failed)" in out
    assert "eta" in out
    assert "sweep finished: 3 job(s), 0 failed" in out and "python -m dlf.aggregate sw" in out
    finals = [line for line in out.splitlines() if "dlf: ok |" in line]
    assert len(finals) == 3 and not any("±" in line for line in finals)  # one seed per job
