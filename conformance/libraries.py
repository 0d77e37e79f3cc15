"""The libraries gearspec knows how to test, and where their adapters are.

``client:NAME`` names one (``gearspec run --client NAME``); ``client:exec:COMMAND``
is any other adapter (``conformance/adapters/README.md``).  ``make clients``
(part of the README's set-up commands) installs them all: Debian's packages,
a virtualenv each for the Python libraries (the python-gearman forks all
install a module named ``gearman``) and the npm packages, all under
``.clients/``.  A known library that is not installed here is a target that
says, in one line, what installs it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conformance.library import LibraryTarget
from conformance.targets import TargetError

ADAPTERS = Path(__file__).resolve().parent / "adapters"
ROOT = ADAPTERS.parent.parent
CLIENTS = ROOT / ".clients"  # git-ignored: made by `make clients`
NODE_MODULES = CLIENTS / "node" / "node_modules"
LIBGEARMAN_HEADER = Path("/usr/include/libgearman-1.0/gearman.h")


@dataclass(frozen=True)
class Known:
    """A library with an adapter in this project."""

    name: str
    command: Callable[[], list[str]]
    present: Callable[[], str | None]  # None when it can run here, else why not
    env: dict[str, str] = field(default_factory=dict)


def _venv(name: str) -> Path:
    return CLIENTS / f"venv-{name}" / "bin" / "python"


def _in_venv(name: str, module: str) -> Callable[[], str | None]:
    def present() -> str | None:
        if not _venv(name).exists():
            return f"not installed here (make clients: pip install {name} into {_venv(name)})"
        return None if _imports(str(_venv(name)), module) else \
            f"{name} is installed in {_venv(name).parent.parent} but `import {module}` fails"
    return present


def _imports(python: str, module: str) -> bool:
    done = subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                          timeout=60, check=False)
    return done.returncode == 0


def _program(program: str, check: list[str], installs: str) -> Callable[[], str | None]:
    def present() -> str | None:
        if shutil.which(program) is None:
            return f"{program} is not installed here ({installs})"
        done = subprocess.run([program, *check], capture_output=True, timeout=60, check=False)
        return None if done.returncode == 0 else f"not installed here ({installs})"
    return present


def _node(package: str) -> Callable[[], str | None]:
    def present() -> str | None:
        if shutil.which("node") is None:
            return "node is not installed here (apt-get install nodejs npm)"
        if not (NODE_MODULES / package).is_dir():
            return f"not installed here (make clients: npm install --prefix {CLIENTS / 'node'} " \
                   f"{package})"
        return None
    return present


LIBGEARMAN_ADAPTER = CLIENTS / "bin" / "libgearman-adapter"


def _libgearman() -> str | None:
    """libgearman's adapter is C: compiled with cc on first use, against the installed
    libgearman-dev."""
    source = ADAPTERS / "libgearman.c"
    if not LIBGEARMAN_HEADER.exists():
        return "libgearman's headers are not installed here (apt-get install libgearman-dev)"
    if not Path("/usr/include/jansson.h").exists():
        return "the adapter reads its job with Jansson (apt-get install libjansson-dev)"
    if shutil.which("cc") is None:
        return "no C compiler here (apt-get install gcc)"
    if LIBGEARMAN_ADAPTER.exists() and \
            LIBGEARMAN_ADAPTER.stat().st_mtime >= source.stat().st_mtime:
        return None
    LIBGEARMAN_ADAPTER.parent.mkdir(parents=True, exist_ok=True)
    building = LIBGEARMAN_ADAPTER.with_suffix(f".{os.getpid()}")  # parallel test workers
    done = subprocess.run(["cc", "-O1", "-Wall", "-o", str(building), str(source), "-lgearman",
                           "-ljansson"],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        return f"cc could not build {source.name}: {done.stderr.strip()[-300:]}"
    building.replace(LIBGEARMAN_ADAPTER)
    return None


def _python(script: str, python: Callable[[], str] = lambda: sys.executable,
            *args: str) -> Callable[[], list[str]]:
    return lambda: [python(), str(ADAPTERS / script), *args]


KNOWN: dict[str, Known] = {known.name: known for known in (
    Known("gearspec", _python("gearspec_client.py"), lambda: None),
    Known("libgearman", lambda: [str(LIBGEARMAN_ADAPTER)], _libgearman),
    Known("php", lambda: ["php", str(ADAPTERS / "php_gearman.php")],
          _program("php", ["-r", "exit(extension_loaded('gearman') ? 0 : 1);"],
                   "apt-get install php-cli php-gearman")),
    Known("perl", lambda: ["perl", str(ADAPTERS / "perl_gearman.pl")],
          _program("perl", ["-MGearman::Client", "-MGearman::Worker", "-MJSON::XS", "-e", "1"],
                   "apt-get install libgearman-client-perl libjson-xs-perl")),
    Known("gear", _python("gear_adapter.py"),
          lambda: None if _imports(sys.executable, "gear") else
          "not installed here (pip install gear: make setup does it)"),
    # The python-gearman 2.0.2 forks: one adapter, told which fork (their modules differ).
    *(Known(name, _python("python_gearman.py", lambda n=name: str(_venv(n)), name),
            _in_venv(name, module))
      for name, module in (("pygearman", "gearman"), ("python3-gearman", "python3_gearman"),
                           ("py3gearman", "py3gearman"))),
    Known("aiogear", _python("aiogear_adapter.py", lambda: str(_venv("aiogear"))),
          _in_venv("aiogear", "aiogear")),
    Known("npm-gearman", lambda: ["node", str(ADAPTERS / "npm_gearman.js")],
          _node("gearman"), {"NODE_PATH": str(NODE_MODULES)}),
    Known("npm-node-gearman", lambda: ["node", str(ADAPTERS / "npm_node_gearman.js")],
          _node("node-gearman"), {"NODE_PATH": str(NODE_MODULES)}),
)}

#: Libraries looked at and not testable, with why (they are findings too).
UNUSABLE = {
    "gearman3": "PyPI gearman3 0.2.1 installs and imports on Python 3.11 but dies at the "
                "first bytes a server sends it: its connection calls array.fromstring, which "
                "Python 3.9 removed (tests/test_library.py shows it)",
}


def parse_library(spec: str) -> LibraryTarget:
    """``client:NAME`` or ``client:exec:COMMAND``."""
    name = spec[len("client:"):]
    if name.startswith("exec:"):
        command = shlex.split(name[len("exec:"):])
        if not command:
            raise TargetError(f"{spec!r}: say the adapter's command")
        return LibraryTarget(name=spec, command=command)
    if name in UNUSABLE:
        raise TargetError(f"{name}: {UNUSABLE[name]}")
    known = KNOWN.get(name)
    if known is None:
        raise TargetError(f"unknown library {name!r} (known: {', '.join(KNOWN)}; or "
                          "client:exec:COMMAND for an adapter of your own)")
    return LibraryTarget(name=spec, command=known.command(), cwd=ROOT, present=known.present,
                         env=dict(known.env))
