"""The numerical core: Gamma(t) schedules, dynamical losses, optimizers, the compiled engine, the
fused MLP step, typed configs and registries. It computes; it imports nothing outside dlf.core."""
