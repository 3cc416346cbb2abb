"""dlf's Hydra configuration (a package, so that Hydra finds it as pkg://dlf.conf once installed)."""
