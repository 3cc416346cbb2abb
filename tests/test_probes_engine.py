"""Probes inside the compiled engine: the values in probes.jsonl against exact spectra of the
final state, each probe on its own cadence, the per-step F trace against the metrics rows,
probes off = nothing recorded."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf import config as config_lib
from dlf.drive.build import build
from dlf.drive.run import run
from dlf.outputs import read_jsonl

pytestmark = pytest.mark.slow


def _cfg(ntk=None, every=10):
    # width 8: 2*8 + 8 + 8*3 + 3 = 51 parameters, so Lanczos of order 51 is exact
    return config_lib.from_dict({
        "seeds": 2, "precision": "float64", "model": {"width": 8}, "dataset": {"per_class": 20},
        "schedule": {"A": 20, "T": 30}, "train": {"steps": 70, "log_every": 35},
        "probes": {"hessian": {"every": every, "order": 51}, "ntk": {"every": every, **(ntk or {})}},
        "compile_cache": None})


OFF = {"hessian": {"every": 0}, "ntk": {"every": 0}}


def _final_state(cfg, out):
    """Retrain without probes (same seeds, same steps): the probes do not change training."""
    off = config_lib.replace(cfg, probes=OFF)
    with jax.enable_x64(True):
        b = build(off)
        from dlf.core.engine import fit
        states, _ = fit(b.program, b.states, b.hp, b.data, cfg.train.steps, cfg.train.steps, lambda s, m: None)
    return b, states


@pytest.mark.parametrize("explicit_max", [300, 0])  # explicit NTK, then matrix-free Lanczos
def test_probe_values_equal_exact_spectra_of_the_final_state(tmp_path, explicit_max):
    cfg = _cfg(ntk={"samples": 15, "order": 45, "explicit_max": explicit_max})
    run(cfg, tmp_path)
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [0, 35, 70]  # the log cadence
    rows = read_jsonl(tmp_path / "probes.jsonl")
    assert [r["step"] for r in rows] == [0, 10, 20, 30, 40, 50, 60, 70]  # the probes' cadence
    last = rows[-1]
    b, states = _final_state(cfg, tmp_path)
    from dlf.probes.evaluators import ntk_indices
    idx = ntk_indices(cfg.probes["ntk"], np.asarray(b.data.y_train), 3)
    assert len(idx) == 15 and np.bincount(np.asarray(b.data.y_train)[idx]).tolist() == [5, 5, 5]
    with jax.enable_x64(True):
        _, unravel = jax.flatten_util.ravel_pytree(jax.tree.map(lambda x: x[0], states.params))

        @jax.jit  # the explicit matrices, one compiled program for both runs
        def hessian_and_jacobian(state):
            flat = jax.flatten_util.ravel_pytree(state.params)[0]
            F = b.program.objective(state, b.hp, b.data.x_train, b.data.y_train, b.data)
            H = jax.hessian(lambda w: F(unravel(w))[0])(flat)
            logits = lambda w: b.program.apply(unravel(w), {}, b.data.x_train[idx], False)[0].reshape(-1)  # noqa: E731
            return H, jax.jacfwd(logits)(flat)

        for r in range(2):
            H, J = hessian_and_jacobian(jax.tree.map(lambda x: x[r], states))
            top = float(np.linalg.eigvalsh(np.asarray(H))[-1])
            assert last["hessian_lambda_max"][r] == pytest.approx(top, rel=1e-8)
            ntk = np.asarray(J @ J.T)
            assert last["ntk_lambda_max"][r] == pytest.approx(float(np.linalg.eigvalsh(ntk)[-1]), rel=1e-8)


def test_loss_trace_and_threshold_summary(tmp_path):
    cfg = _cfg(ntk={"samples": 15})
    s = run(cfg, tmp_path)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    probe_rows = read_jsonl(tmp_path / "probes.jsonl")
    z = np.load(tmp_path / "probes.npz")
    assert z["F"].shape == (2, 70) and z["probe_steps"].tolist() == [0, 10, 20, 30, 40, 50, 60, 70]
    # F(t) recorded inside the scan, before step t, equals the row's F at step t
    for r in rows[:-1]:
        np.testing.assert_allclose(z["F"][:, r["step"]], r["loss"], rtol=1e-12)
    np.testing.assert_allclose(z["hessian_lambda_max"], np.array([r["hessian_lambda_max"] for r in probe_rows]).T)
    t = s["threshold"]
    assert {"mean", "std", "n", "n_onsets", "per_seed", "detector", "edge_of_stability"} <= set(t)
    assert [p["seed"] for p in t["per_seed"]] == [0, 1] and t["edge_of_stability"] == 2.0
    json.dumps(t, allow_nan=False)
    assert (tmp_path / "probes.png").exists()  # the Fig. 4 panels of the first seed (content: test_probe_plots)
    # figures=false: the same run draws neither figure, removes those an earlier attempt left, and
    # writes the same data
    (tmp_path / "nofig").mkdir()
    for stale in ("dynamics.png", "probes.png"):
        (tmp_path / "nofig" / stale).write_bytes((tmp_path / stale).read_bytes())
    off = run(config_lib.replace(cfg, figures=False), tmp_path / "nofig")
    assert not list((tmp_path / "nofig").glob("*.png")) and off["threshold"] == s["threshold"]
    z_off = np.load(tmp_path / "nofig" / "probes.npz")
    assert set(z_off.files) == set(z.files) and all(np.array_equal(z_off[k], z[k], equal_nan=True) for k in z.files)


def test_each_probe_has_its_own_cadence(tmp_path):
    cfg = config_lib.replace(_cfg(ntk={"samples": 15}), probes={"hessian": {"every": 20}, "ntk": {"every": 35}})
    run(cfg, tmp_path)
    rows = read_jsonl(tmp_path / "probes.jsonl")
    assert [r["step"] for r in rows] == [0, 20, 35, 40, 60, 70]
    has = {r["step"]: {k for k in r if k.endswith("lambda_max")} for r in rows}
    assert has[20] == has[40] == has[60] == {"hessian_lambda_max"} and has[35] == {"ntk_lambda_max"}
    assert has[0] == {"hessian_lambda_max", "ntk_lambda_max"} and has[70] == {"ntk_lambda_max"}  # 70 = 2 x 35
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [0, 35, 70]


def test_probes_off_record_nothing(tmp_path):
    cfg = config_lib.replace(_cfg(), probes=OFF)
    s = run(cfg, tmp_path)
    assert "threshold" not in s and not (tmp_path / "probes.npz").exists() and not (tmp_path / "probes.jsonl").exists()
    assert all("hessian_lambda_max" not in r for r in read_jsonl(tmp_path / "metrics.jsonl"))
    with jax.enable_x64(True):
        b = build(cfg)
        hlo = jax.jit(lambda st: b.program.chunk(st, b.hp, b.data, 5)).lower(
            jax.tree.map(lambda x: x[0], b.states)).as_text()
    assert "eigh" not in hlo.lower() and "loss_trace" not in hlo


@pytest.mark.parametrize("loss", ["mse_sample", "mse_output"])
def test_dynamical_mse_runs_with_probes(tmp_path, loss):
    cfg = config_lib.replace(_cfg(ntk={"samples": 15}), loss=loss, optimizer={"lr": 0.1})
    s = run(cfg, tmp_path)
    assert s["status"] == "ok" and np.isfinite(read_jsonl(tmp_path / "probes.jsonl")[-1]["hessian_lambda_max"]).all()
    assert jnp.isfinite(s["final"]["loss"]["mean"])


def test_probes_run_inside_the_chunks_with_the_key_of_their_step(tmp_path):
    """Probe points no longer end chunks (the chunks end at log points only), and each value
    computed inside the scan equals the probe evaluated directly on the state after that many
    steps with the key of that step (Lanczos order 2 of 51 parameters: the start vector matters)."""
    from dlf.core.engine import Compiled, fit

    cfg = config_lib.replace(_cfg(), probes={"hessian": {"every": 15, "order": 2}, "ntk": {"every": 0}})
    run(cfg, tmp_path)
    rows = {r["step"]: r["hessian_lambda_max"] for r in read_jsonl(tmp_path / "probes.jsonl")}
    assert sorted(rows) == [0, 15, 30, 45, 60]
    with jax.enable_x64(True):
        b = build(cfg)
        assert Compiled(b.program, b.states, b.hp, b.data, 70, 35).bounds == [35, 70]
        off = build(config_lib.replace(cfg, probes=OFF))
        for step in (15, 45):
            states, _ = fit(off.program, off.states, off.hp, off.data, step, step, lambda s, m: None)
            direct = jax.jit(jax.vmap(lambda st: b.program.outputs(st, b.hp, b.data, ("hessian",)),
                                      in_axes=(0,)))(states)["hessian_lambda_max"]
            np.testing.assert_allclose(rows[step], np.asarray(direct), rtol=1e-10)
            # another key gives another value: the test can tell the keys apart
            moved = states._replace(probe_key=jax.vmap(lambda k: jax.random.fold_in(k, 1))(states.probe_key))
            other = jax.jit(jax.vmap(lambda st: b.program.outputs(st, b.hp, b.data, ("hessian",))))(
                moved)["hessian_lambda_max"]
            assert not np.allclose(rows[step], np.asarray(other), rtol=1e-6)


@pytest.mark.parametrize("vmap_size", [None, 1])
def test_the_probe_inside_a_vmapped_chunk_is_a_branch_not_a_select(vmap_size):
    """The probe's predicate is the chunk's unbatched step count, so under vmap (and lax.map) it
    stays a conditional that runs the probe only where it is due (a batched predicate would turn
    it into a select that computes the probe at every step): the compiled chunk holds a conditional."""
    from dlf.core.engine import Compiled

    cfg = config_lib.replace(_cfg(), probes={"hessian": {"every": 10, "order": 5}, "ntk": {"every": 0}})
    with jax.enable_x64(True):
        b = build(cfg)
        c = Compiled(b.program, b.states, b.hp, b.data, 70, 35, vmap_size=vmap_size)
        assert c.bounds == [35, 70] and len(c.runners) == 1
        hlo = next(iter(c.runners.values())).as_text()
    assert "conditional" in hlo
