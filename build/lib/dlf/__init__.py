"""dlf: dynamical loss functions (Ruiz-Garcia, Zhang, Schoenholz, Liu, ICML 2021) in JAX."""
