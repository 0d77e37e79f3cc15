"""``python -m conformance.mutant_exec SCRIPT [ARG ...]``: run a program of the
project with one mutant in place.

The mutant comes in ``$GEARSPEC_MUTANT`` (its fields as JSON, as
``Mutant.to_json`` writes them); the import hook is installed, then SCRIPT runs
as ``__main__``, so that the modules it imports afterwards are the mutant's.
``gearspec mutate --client`` runs gearspec's client adapter this way: the adapter
is a process of its own, started by the runner for every case, and this is how
the mutant reaches it without the adapter knowing anything of mutation.
"""

from __future__ import annotations

import json
import os
import runpy
import sys

from conformance.mutants import Mutant, install

VARIABLE = "GEARSPEC_MUTANT"


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m conformance.mutant_exec SCRIPT [ARG ...]")
    if os.environ.get(VARIABLE):
        install(Mutant(**json.loads(os.environ[VARIABLE])))
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
