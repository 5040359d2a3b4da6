"""Models: shared layers below, the Transformer and the RNN above them, one `Seq2Seq` protocol (base.py)."""
