"""Guardrails for harms: screens that flag offensive questions, answers and tuning data.

`screen` holds the Protocol and its two screens (word list, linear probe); `training` fits the
probe on the packaged labelled set and measures it on a held-out part; `policy` applies the
chosen action (flag, refuse, redact) to a question and its streamed answer; `datasets` screens a
tuning dataset before training.
"""
