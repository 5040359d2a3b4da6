"""Data: corpora of every kind, text files, language pairs, the tokenizer, encoding once into cached columns, and
the batches training reads (in the order they flow: sources, text, pairs, tokenizer, encode, prepare, batching)."""
