"""Conformance: targets, scenarios, the runner, transcripts and verdicts.

The engine lands with the issue "Conformance engine and scenario catalog";
until then this package is empty on purpose.
"""
