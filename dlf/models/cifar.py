"""One init/apply interface for models with and without batch-norm state."""
from __future__ import annotations

import jax.numpy as jnp

from dlf.models.wrn import WideResNet


def _mode(model, train: bool) -> dict:
    # Only the WRN has a train/eval mode; the Myrtle and the MLP take the input alone.
    return {"train": train} if isinstance(model, WideResNet) else {}


def init(model, key, x_example):
    """(params, model_state): model_state is {} or {"batch_stats": ...}, the non-trained variables."""
    variables = dict(model.init(key, x_example, **_mode(model, False)))
    params = variables.pop("params")
    return params, variables


def apply(model, params, model_state: dict, x, train: bool):
    """(logits in at least float32, new model_state). Batch statistics are used and updated only
    when `train`; in eval mode the running averages are used and model_state comes back as is."""
    variables = {"params": params, **model_state}
    if train and model_state:
        logits, new_state = model.apply(variables, x, **_mode(model, True), mutable=list(model_state))
    else:
        logits, new_state = model.apply(variables, x, **_mode(model, train)), model_state
    return logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), new_state
