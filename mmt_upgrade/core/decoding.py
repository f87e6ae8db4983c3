"""What fairseq-generate does around the network, written out so that another runtime (CTranslate2) translating
the same model gives the same output: which sentences it skips, how long an output may grow, and the hypothesis
string it prints. Checked against fairseq's own code in tests/unit/test_ct2_decoding.py."""
from __future__ import annotations

from typing import Sequence

BACKENDS = ("fairseq", "ct2")
CT2_QUANTIZATIONS = ("int8", "int8_float32", "float32")
GENERATE_MAX_LEN_B = 200  # fairseq-generate's --max-len-b default (--max-len-a 0)
TASK_MAX_POSITIONS = 1024  # fairseq-generate's --max-source-positions / --max-target-positions defaults
CT2_PAD = "<blank>"  # CTranslate2's name for fairseq's <pad>


def max_positions(model_max: int) -> int:
    """What fairseq-generate resolves from the task's default and the model's own limit (the smaller)."""
    return min(int(model_max), TASK_MAX_POSITIONS)


def too_long(src_pieces: int, tgt_pieces: int, max_source_positions: int, max_target_positions: int) -> bool:
    """`--skip-invalid-size-inputs-valid-test`: a side longer than its positions (a language token and `</s>`
    around its pieces) is skipped, reference side included."""
    return (src_pieces + 2 > max_positions(max_source_positions)
            or tgt_pieces + 2 > max_positions(max_target_positions))


def max_output_tokens(max_target_positions: int, max_len_b: int = GENERATE_MAX_LEN_B) -> int:
    """The tokens fairseq's SequenceGenerator may produce before it forces `</s>`, the target language token
    included: `min(max_len_b, max_target_positions - 1)` (`--max-len-a 0`). CTranslate2's
    `max_decoding_length` counts the same way (its target prefix included)."""
    return min(int(max_len_b), int(max_target_positions) - 1)


def hypothesis_string(tokens: Sequence[str], tgt_token: str) -> str:
    """fairseq-generate's `D-` line for `--post-process sentencepiece`: `Dictionary.string` without `</s>`, `<s>`
    and the target language token (the task strips it), then the pieces joined at their `▁`."""
    drop = {"</s>", "<s>", tgt_token}
    text = " ".join(t for t in tokens if t not in drop)
    return text.replace(" ", "").replace("\u2581", " ").strip()


def ct2_cache_name(checkpoint_sha256: str, quantization: str) -> str:
    """The directory, beside a checkpoint, of its CTranslate2 export for the `ct2` evaluation backend."""
    return f"{checkpoint_sha256[:16]}-{quantization}"
