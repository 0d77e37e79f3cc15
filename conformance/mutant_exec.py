"""``python -m conformance.mutant_exec SCRIPT|-m MODULE [ARG ...]``: run a program
of the project with one mutant in place.

The mutant comes in ``$GEARSPEC_MUTANT`` (its fields as JSON, as
``Mutant.to_json`` writes them); the import hook is installed, then SCRIPT runs
(or MODULE) runs as ``__main__``, so that the modules it imports afterwards are
the mutant's.  ``gearspec mutate --client`` runs gearspec's client adapter this
way (the adapter is a process of its own, started by the runner for every case),
and ``gearspec mutate --fuzz`` the reference server (``-m reference_server``) as
an ``exec:`` target: the mutant reaches them without either knowing anything of
mutation.
"""

from __future__ import annotations

import json
import os
import runpy
import sys

from conformance.mutants import Mutant, install

VARIABLE = "GEARSPEC_MUTANT"


def main() -> None:
    module = sys.argv[1:2] == ["-m"]
    if len(sys.argv) < 2 + module:
        sys.exit("usage: python -m conformance.mutant_exec SCRIPT|-m MODULE [ARG ...]")
    if os.environ.get(VARIABLE):
        install(Mutant(**json.loads(os.environ[VARIABLE])))
    sys.argv = sys.argv[1 + module:]
    if module:
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
