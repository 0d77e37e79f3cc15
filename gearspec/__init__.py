"""The ``gearspec`` command: wires the reference server, conformance, fuzz and reports."""
