"""Layer 2, fairseq I/O: checkpoints, the prepared-data layout, loading models, the fairseq-train /
fairseq-generate / preprocess drivers, the distillation teacher and its cache.

Imports `core` and fairseq; never `pipeline` or `cli`.
"""
