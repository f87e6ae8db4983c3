"""Cross-vocabulary distillation from the old model: alignment, losses, teacher (methods.md §3)."""
