"""Layer 1, pure logic: vocabularies, SentencePiece protos, embedding rows, growth and lr-scaling maths,
sampling weights, scoring, distillation alignment and losses, option declarations, files.

Tensors, dictionaries and SentencePiece models in and out; no fairseq process. Imports only `core`.
"""
