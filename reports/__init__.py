"""Reports: HTML, JSON, JUnit and terminal tables rendered from a run's results.
Lands with the issue "Reports"; empty on purpose until then.
"""
