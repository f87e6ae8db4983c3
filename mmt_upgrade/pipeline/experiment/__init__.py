"""`mmt-upgrade experiment`: spec (the YAML) -> plan (every run's commands) -> job (one run: train and
evaluate) -> run (orchestration through submitit's executors in `runner`)."""
