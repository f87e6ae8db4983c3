"""Layer 3, pipeline stages: data, upgrade, verify, train, evaluate, experiment, report.

Each stage is one module (or package) that the CLI calls; imports `core` and `fairseq_io`, and earlier
stages, never `cli`.
"""
