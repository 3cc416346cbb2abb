"""The numerical core: Gamma(t) schedules, dynamical losses, optimizers, the compiled engine, typed configs and registries."""
