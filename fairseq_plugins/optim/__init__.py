from . import adam_scaled  # noqa: F401
