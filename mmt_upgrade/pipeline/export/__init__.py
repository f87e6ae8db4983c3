"""Ways out of fairseq: `mmt-upgrade export MODEL --to hf|ct2 OUT` (`command.py`), a Hugging Face directory
(`hf.py`) or a CTranslate2 one (`ct2.py`)."""
