from . import upgrade_translation  # noqa: F401
