"""Fitting a model: lexical and field features, the fast heads, the fine-tune loop, calibration
and the auto-routing gate, evaluation, drift references and suspected label errors."""
