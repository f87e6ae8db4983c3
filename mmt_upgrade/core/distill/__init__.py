"""Cross-vocabulary distillation from the old model: alignment, losses, teacher (docs/methods.md §7)."""
