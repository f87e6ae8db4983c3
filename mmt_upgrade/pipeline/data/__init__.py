"""Data preparation: the Bible corpus, SentencePiece, fairseq binarization."""
