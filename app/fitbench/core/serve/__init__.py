"""Serving under load: a load generator for OpenAI-compatible servers; llama-server's lifecycle.

Stage rule: this package may import results and paths, nothing from bench, predict, advise or
report (those are later stages), and nothing from Qt.
"""
