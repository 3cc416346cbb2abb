"""Host-side analysis of finished runs: bifurcations and thresholds, phase tables, the results layer."""
