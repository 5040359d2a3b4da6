"""Decoding: search, the translators (mtx's own and CTranslate2's) and their loading, export, evaluation with
sacreBLEU, attention pictures."""
