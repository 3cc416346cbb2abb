"""Extension points: a toy model, loss and probe registered from outside dlf/ (tests/plugins/)
run end to end through the CLI, each one registration and one YAML file."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, run_cli

from dlf.outputs import read_jsonl

PLUGINS = ROOT / "tests" / "plugins"


@pytest.mark.slow
def test_toy_model_loss_and_probe_run_end_to_end(tmp_path):
    env = {"PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}
    p = run_cli("plugins=[toy_plugin]", f"hydra.searchpath=[file://{PLUGINS / 'conf'}]", "model=toy_linear",
                "model.scale=0.5", "loss=toy_hinge", "+probes.param_norm.every=10", "train.steps=30", "schedule.T=10",
                "train.log_every=15", "seeds=2", "optimizer.lr=0.1", "hydra.run.dir=run", cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["model"] == {"name": "toy_linear", "scale": 0.5}
    assert summary["config"]["loss"] == "toy_hinge"
    probes = read_jsonl(run / "probes.jsonl")
    assert [r["step"] for r in probes] == [0, 10, 20, 30] and set(probes[0]) == {"step", "param_norm"}
    # exact references at step 0: the seed's initial parameters, the toy loss on the spiral
    import sys
    sys.path.insert(0, str(PLUGINS))
    import toy_plugin  # noqa: F401  (registers the toy pieces in this process too)

    from dlf import config as config_lib
    from dlf.drive.build import build
    cfg = config_lib.from_dict({**summary["config"], "plugins": ["toy_plugin"]})
    b = build(cfg)
    for r in range(2):
        params = jax.tree.map(lambda x: x[r], b.states.params)
        norm = float(jnp.sqrt(sum(jnp.sum(x ** 2) for x in jax.tree.leaves(params))))
        assert probes[0]["param_norm"][r] == pytest.approx(norm, rel=1e-6)
        W, c = np.asarray(params["Dense_0"]["kernel"]), np.asarray(params["Dense_0"]["bias"])
        f = 0.5 * (np.asarray(b.data.x_train) @ W + c)
        y = np.asarray(b.data.y_train)
        margins = np.maximum(0, 1 + f - f[np.arange(len(y)), y][:, None])
        margins[np.arange(len(y)), y] = 0
        g = np.asarray(b.program.gamma(jnp.asarray(0), b.hp))
        F = np.mean(g[y] * margins.sum(1))
        assert read_jsonl(run / "metrics.jsonl")[0]["loss"][r] == pytest.approx(F, rel=1e-5)
    assert probes[-1]["param_norm"] != probes[0]["param_norm"]  # the probe follows training


def test_unknown_plugin_is_one_line(tmp_path):
    p = run_cli("plugins=[no_such_module_xyz]", "train.steps=2", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith("dlf: error: plugins: cannot import")


def test_reading_results_never_imports_the_plugins_they_name(tmp_path):
    """Results carry a typed config that is read without importing its `plugins`: a crafted sweep
    whose job names a module placed beside it is aggregated, loaded and listed, and the module
    never runs (a model of a plugin not imported here makes that job unreadable, not executable)."""
    from dlf.results import load

    sweep = tmp_path / "sweep"
    marker = tmp_path / "ran"
    for num, plugins in ((0, ["evil_plugin"]), (1, ["evil_plugin"])):
        job = sweep / f"{num}_A10_T100_s{num}"
        job.mkdir(parents=True)
        summary = {"status": "ok", "seeds": [num], "A": 10.0, "T": 100, "diverged_seeds": [],
                   "final": {k: {"per_seed": [0.5]} for k in ("train_acc", "val_acc")},
                   "config": {"seed": num, "seeds": 1, "plugins": plugins}}
        (job / "summary.json").write_text(json.dumps(summary))
    (sweep / "evil_plugin.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    p = run_cli(str(sweep), cwd=sweep, module="dlf.aggregate")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "2 job(s) ok" in p.stdout
    df = load(sweep)
    assert len(df) == 2 and not marker.exists()
