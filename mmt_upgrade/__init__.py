"""mmt-upgrade: upgrade a trained fairseq multilingual MT model with new languages."""

__version__ = "0.1.0"
