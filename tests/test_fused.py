"""The fused MLP step (dlf.core.fused) against the generic engine: same maths, same outputs; the
builder's decision (dlf.drive.build.use_fused) from the model's declared FusedSupport."""
from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf import config as config_lib
from dlf.core import fused
from dlf.core.engine import fit
from dlf.drive.build import build, fused_blocker, use_fused
from dlf.drive.run import run
from dlf.models import MODELS, MLPConfig
from dlf.models import fused_blocker as model_blocker
from dlf.models.mlp import fused_arrays, fused_tree


def cfg_of(step: str, **over):
    base = {"model": {"width": 16}, "seeds": 3, "schedule": {"A": 10, "T": 20, "off_last_periods": 1},
            "train": {"steps": 100, "log_every": 50, "step": step}, "compile_cache": None}
    for k, v in over.items():
        if isinstance(v, dict):
            base.setdefault(k, {}).update(v)
        else:
            base[k] = v
    return config_lib.from_dict(base)


def train(cfg, scale_run0: float = 1.0):
    """(final states, metrics rows, program) of cfg's seeds trained by the engine; run 0's
    parameters multiplied by scale_run0 first."""
    rows = []
    with jax.enable_x64(cfg.precision == "float64"):
        b = build(cfg)
        states = b.states._replace(params=jax.tree.map(lambda x: x.at[0].multiply(scale_run0), b.states.params))
        states, _ = fit(b.program, states, b.hp, b.data, cfg.train.steps, cfg.train.log_every,
                        lambda s, m: rows.append((s, m)))
        return jax.device_get(states), rows, b.program


def max_rel(a, b):
    return max(float(np.max(np.abs(x - y)) / (np.max(np.abs(y)) + 1e-30))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("classes, per_class", [(4, 20), (2, 13), (5, 7)])  # N = 80 (no padding), 26, 35
def test_loss_and_grad_equals_jax_grad_float64(classes, per_class):
    cfg = cfg_of("generic", precision="float64", model={"width": 7},
                 dataset={"classes": classes, "per_class": per_class})
    with jax.enable_x64(True):
        b = build(cfg)
        params = jax.tree.map(lambda x: x[1], b.states.params)
        g = jnp.asarray([2.5, 0.5, 0.7, 0.3, 1.9][:classes])
        F, arrays = jax.jit(fused.loss_and_grad)(fused_arrays(params), b.data.x_train, b.data.y_train, g)
        grads = fused_tree(arrays)
        F_ref, grads_ref = jax.jit(jax.value_and_grad(
            lambda p: b.program.loss(b.program.apply(p, {}, b.data.x_train, True)[0], b.data.y_train, g)[0]))(params)
        assert abs(float(F - F_ref)) < 1e-14
        assert max_rel(grads, grads_ref) < 1e-13
        logits = fused.mlp_logits(fused_arrays(params), b.data.x_train)
        apply = jax.jit(b.program.apply, static_argnums=3)
        np.testing.assert_allclose(logits, apply(params, {}, b.data.x_train, True)[0], rtol=1e-13, atol=1e-13)


def test_fused_equals_generic_float64_100_steps():
    s_f, rows_f, prog_f = train(cfg_of("fused", precision="float64", optimizer={"lr": 1.0}))
    s_g, rows_g, prog_g = train(cfg_of("generic", precision="float64", optimizer={"lr": 1.0}))
    assert prog_f.loss_grad is not None and prog_g.loss_grad is None
    assert max_rel(s_f.params, s_g.params) < 1e-12
    assert (s_f.step == 100).all() and (s_f.diverged_step == -1).all()
    for (u, m), (v, n) in zip(rows_f, rows_g):
        assert u == v and m.keys() == n.keys()
        np.testing.assert_allclose(m["loss"], n["loss"], rtol=1e-12)


@pytest.mark.slow
def test_fused_equals_generic_float32_2000_steps_lr_01():
    over = dict(optimizer={"lr": 0.1}, model={"width": 100}, schedule={"A": 10, "T": 100},
                train={"steps": 2000, "log_every": 1000})
    s_f, rows_f, _ = train(cfg_of("fused", **over))
    s_g, rows_g, _ = train(cfg_of("generic", **over))
    # float32 rounding (different summation orders, fast-math) amplified over 2000 steps: 2.4e-4 measured
    assert max_rel(s_f.params, s_g.params) < 1e-3
    np.testing.assert_allclose(rows_f[-1][1]["loss"], rows_g[-1][1]["loss"], rtol=1e-3)
    np.testing.assert_array_equal(rows_f[-1][1]["train_acc"], rows_g[-1][1]["train_acc"])


@pytest.mark.slow  # trains every run of a small grid to divergence
def test_divergence_detected_and_frozen_per_run():
    # run 0 starts with parameters 1e20 times too large: its float32 logits overflow (F = inf) at the
    # first step; both paths freeze it there with its last finite parameters, and train the
    # other runs on
    over = dict(optimizer={"lr": 0.1}, train={"steps": 20, "log_every": 20}, schedule={"off_last_periods": 0})
    s_f, rows_f, _ = train(cfg_of("fused", **over), scale_run0=1e20)
    s_g, _, _ = train(cfg_of("generic", **over), scale_run0=1e20)
    assert s_f.diverged_step[0] >= 0 and (s_f.diverged_step[1:] == -1).all()
    np.testing.assert_array_equal(s_f.diverged_step, s_g.diverged_step)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(s_f.params))
    assert max_rel(s_f.params, s_g.params) < 1e-4
    assert np.isfinite(rows_f[-1][1]["loss"][1:]).all()


def test_same_initial_params_on_either_path():
    """Initialisation is not compiled with the fused step's fast-math options: bit-identical."""
    a = build(cfg_of("fused")).states.params
    b = build(cfg_of("generic")).states.params
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow  # a whole driver run (the slow tier)
def test_outputs_identical_in_form(tmp_path):
    sums, rows = {}, {}
    for step in ("fused", "generic"):
        run(cfg_of(step, train={"steps": 40, "log_every": 20}), tmp_path / step)
        sums[step] = json.loads((tmp_path / step / "summary.json").read_text())
        rows[step] = [json.loads(x) for x in (tmp_path / step / "metrics.jsonl").read_text().splitlines()]
    assert sums["fused"].keys() == sums["generic"].keys()
    assert sums["fused"]["final"].keys() == sums["generic"]["final"].keys()
    assert [r.keys() for r in rows["fused"]] == [r.keys() for r in rows["generic"]]
    assert [r["step"] for r in rows["fused"]] == [0, 20, 40]
    np.testing.assert_allclose(rows["fused"][-1]["loss"], rows["generic"][-1]["loss"], rtol=1e-4)


@pytest.mark.parametrize("over, why", [
    (dict(loss="mse_sample"), "loss"),
    (dict(train={"batch_size": 30, "epochs": 2, "steps": 100}), "mini-batch"),
    (dict(probes={"hessian": {"every": 10}}), "probes"),
])
def test_generic_where_fused_does_not_apply(over, why):
    cfg = cfg_of("auto", **over)
    assert not use_fused(cfg, "cpu")
    assert why in fused_blocker(cfg)
    with pytest.raises(config_lib.ConfigError, match="train.step=fused is not allowed"):
        use_fused(config_lib.replace(cfg, train={"step": "fused"}), "cpu")


def test_auto_is_fused_on_cpu_only():
    assert use_fused(cfg_of("auto"), "cpu")
    assert not use_fused(cfg_of("auto"), "gpu")
    assert use_fused(cfg_of("fused"), "gpu")
    assert not use_fused(cfg_of("generic"), "cpu")


def _option_values(f: dataclasses.Field) -> list:
    """Values of an MLP config field to try beside the default config: every other choice, or
    another width (the default config itself is the first case)."""
    if f.metadata.get("choices"):
        return [v for v in f.metadata["choices"] if v != f.default]
    return [13] if f.name == "width" else []


MLP_OPTIONS = [("width", 7)] + [(f.name, v) for f in dataclasses.fields(MLPConfig) for v in _option_values(f)]


@pytest.mark.slow  # one compiled grid per option
@pytest.mark.parametrize("key, value", MLP_OPTIONS, ids=[f"{k}={v}" for k, v in MLP_OPTIONS])
def test_every_mlp_option_is_fused_and_exact_or_sent_to_the_generic_step(key, value):
    """Every option of the MLP (each field of MLPConfig, each of its other choices) either trains with
    the fused step to the generic step's result (float64, 30 steps at lr 1: < 1e-12) or, where the
    model's FusedSupport does not declare it, is trained by the generic step."""
    model = {"width": 7, key: value}  # (width, 7): the default config at a small width
    cfg_f = cfg_of("auto", precision="float64", model=model, train={"steps": 30, "log_every": 30})
    if model_blocker(cfg_f.model) is not None:
        with jax.enable_x64(True):
            assert not use_fused(cfg_f, "cpu") and build(cfg_f).program.loss_grad is None
        with pytest.raises(config_lib.ConfigError, match=f"model.{key}={value}"):
            use_fused(config_lib.replace(cfg_f, train={"step": "fused"}), "cpu")
        return
    s_f, _, prog_f = train(cfg_f)
    s_g, _, prog_g = train(config_lib.replace(cfg_f, train={"step": "generic"}))
    assert prog_f.loss_grad is not None and prog_g.loss_grad is None
    assert max_rel(s_f.params, s_g.params) < 1e-12


def test_a_model_field_the_fused_step_does_not_declare_sends_the_run_to_the_generic_step():
    """A variant of the MLP with one more config field (a plugin's, say) and the MLP's FusedSupport:
    the field is not declared, so the builder trains it with the generic step."""
    @dataclasses.dataclass(frozen=True)
    class WiderMLP(MLPConfig):
        name: str = "mlp_plus"
        dropout: float = 0.0

    MODELS.register("mlp_plus", MODELS["mlp"], config=WiderMLP)
    try:
        cfg = cfg_of("auto", model={"name": "mlp_plus"})
        assert "model.dropout=0.0 (not declared by the fused step)" in fused_blocker(cfg)
        assert build(cfg).program.loss_grad is None
    finally:
        MODELS.unregister("mlp_plus")


@pytest.mark.slow  # a whole driver run (the slow tier)
def test_phase_grid_is_fused_by_default_on_cpu_and_equals_the_generic_grid(tmp_path):
    """dlf.phase (traced A, T and stop step per run) trains with the fused step under train.step=auto
    and gives the generic engine's runs (float64: the same accuracies, losses to rounding)."""
    from dlf.drive.grid import run_phase
    from dlf.results import load

    out = {}
    for step in ("auto", "generic"):
        cfg = cfg_of(step, precision="float64", seeds=2, grid={"A": [1, 10], "T": [20, 30]},
                     train={"steps": 90, "log_every": 30})
        summary = run_phase(cfg, tmp_path / step)
        assert summary["status"] == "ok"
        assert summary["step"] == ("fused" if step == "auto" else "generic")
        out[step] = load(tmp_path / step).sort_values(["A", "T", "seed"]).reset_index(drop=True)
    assert len(out["auto"]) == 8
    np.testing.assert_array_equal(out["auto"][["A", "T", "seed"]], out["generic"][["A", "T", "seed"]])
    np.testing.assert_array_equal(out["auto"]["train_acc"], out["generic"]["train_acc"])
    np.testing.assert_array_equal(out["auto"]["val_acc"], out["generic"]["val_acc"])
    np.testing.assert_allclose(out["auto"]["loss"], out["generic"]["loss"], rtol=1e-9)


@pytest.mark.slow  # a whole driver run (the slow tier)
def test_fused_metrics_are_the_plain_evaluation_of_the_trained_parameters():
    """Fast-math is for the training steps only: every metrics row of a fused run equals the
    generic evaluator (plain compile, one run) applied to the parameters trained so far."""
    cfg = cfg_of("fused", seeds=8, model={"width": 100}, train={"steps": 40, "log_every": 20})
    b = build(cfg)
    rows, states = [], b.states
    for _ in range(2):  # 2 x 20 steps, evaluating the parameters after each
        states, _ = fit(b.program, states, b.hp, b.data, 20, 20, lambda s, m: rows.append(m))
        for i in range(cfg.seeds):
            plain = jax.jit(b.program.evaluate)(jax.tree.map(lambda x: x[i], states), b.hp, b.data)
            for k in ("loss", "ce", "train_acc", "val_acc", "val_ce"):
                assert float(rows[-1][k][i]) == float(plain[k]), (k, i)


@pytest.mark.slow  # a whole driver run (the slow tier)
def test_a_runs_result_does_not_depend_on_how_many_runs_share_its_program():
    """XLA compiles a vmapped group of one run without its batch axis, in another rounding order;
    the fused program pads so that no group is that small. A seed trains to the same bits alone,
    among 5 in one vmap, and as the remainder of 5 runs vmapped 4 at a time."""
    def params(seed, seeds, vmap_size):
        cfg = cfg_of("fused", seed=seed, seeds=seeds, model={"width": 16}, schedule={"A": 10, "T": 10},
                     train={"steps": 30, "log_every": 30})
        b = build(cfg)
        s, _ = fit(b.program, b.states, b.hp, b.data, 30, 30, lambda u, m: None, vmap_size=vmap_size,
                   devices=jax.local_devices()[:1])
        return [np.asarray(x) for x in jax.tree.leaves(s.params)]

    for vmap_size in (None, 4):
        five = params(0, 5, vmap_size)
        for seed in (0, 4):  # seed 4: the remainder group when 4 at a time
            alone = params(seed, 1, vmap_size)
            for x, y in zip(five, alone):
                np.testing.assert_array_equal(x[seed], y[0])
