from . import cross_vocab_distillation  # noqa: F401
