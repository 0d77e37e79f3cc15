"""Fuzzers: hypothesis strategies from the packet table, parser, server, model and
differential fuzzing.  Lands with the issue "Fuzzers"; empty on purpose until then.
"""
