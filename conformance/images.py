"""``gearspec docker build {gearmand,perl,ref,gearspec}``: images without a registry.

Each image is a root filesystem of what is installed here (the server, the
shared libraries ``ldd`` says it needs, the interpreter and modules for the
Perl server and our own), written as a tar and imported with the engine
(``docker import``, the SDK's ``import_image_from_file``): nothing is pulled.
Labels tell the ``docker:`` target how to run a server image
(``conformance/containers.py``).  ``gearspec`` is the harness itself, for a CI
that runs containers: its entrypoint is ``gearspec``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from conformance.containers import client
from conformance.targets import GEARMAND, TargetError
from reference_server import __version__
from reference_server.usage import Parser, UsageError

ROOT = Path(__file__).resolve().parent.parent
PERL_SERVER = Path("/usr/bin/gearmand")  # Debian's gearman-server package


def shared_libraries(binary: Path) -> list[Path]:
    """What the dynamic loader needs for ``binary`` (ldd's paths, loader included)."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    # normpath: a wheel's bundled libraries come as "pkg/../pkg.libs/lib.so".
    return [Path(os.path.normpath(p)) for p in re.findall(r"(/\S+) \(0x", out)]


def _directory(tar: tarfile.TarFile, path: Path, made: set[str], mode: int = 0o755) -> None:
    """A directory entry, once (the engine refuses duplicate paths)."""
    if str(path) not in made:
        made.add(str(path))
        info = tarfile.TarInfo(str(path).lstrip("/"))
        info.type, info.mode = tarfile.DIRTYPE, mode
        tar.addfile(info)


def _add(tar: tarfile.TarFile, path: Path, seen: set[str], made: set[str]) -> None:
    """``path`` at the same place in the image, following symlinks."""
    if str(path) in seen or not path.exists():
        return
    seen.add(str(path))
    if path.is_dir():
        _directory(tar, path, made)
        for child in sorted(path.iterdir()):
            if child.name not in ("__pycache__", "test", "tests", "idlelib", "tkinter",
                                  "ensurepip", "lib2to3", "turtledemo", "site-packages") \
                    and not child.name.startswith("config-"):  # static libpython
                _add(tar, child, seen, made)
        return
    info = tar.gettarinfo(str(path.resolve()), arcname=str(path))
    with open(path.resolve(), "rb") as data:
        tar.addfile(info, data)


def _with_libraries(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        found.append(path)
        if path.is_file() and (path.suffix == ".so" or ".so." in path.name
                               or path.parent.name in ("bin", "sbin")):
            found += shared_libraries(path)
    return found


def gearmand_image() -> tuple[list[Path], list[str], dict[str, str], str]:
    binary = Path(GEARMAND)
    if not binary.exists():
        raise TargetError(f"{binary} is not installed (apt-get install gearman-job-server)")
    version = subprocess.run([str(binary), "--version"], capture_output=True,
                             text=True).stdout.split()[1].split("+")[0]
    labels = {
        "org.gearspec.command": json.dumps([str(binary), "-L", "{host}", "-p", "{port}",
                                            "-l", "{workdir}/server.log",
                                            "-P", "{workdir}/gearmand.pid"]),
        "org.gearspec.capabilities": "echo,grab-job-uniq,gearmand-options,persistence,http",
        "org.gearspec.baseline": "gearmand",
    }
    return _with_libraries([binary]), ["/tmp"], labels, f"gearspec/gearmand:{version}"


def perl_image() -> tuple[list[Path], list[str], dict[str, str], str]:
    if not PERL_SERVER.exists():
        raise TargetError(f"{PERL_SERVER} is not installed (apt-get install gearman-server)")
    perl = Path("/usr/bin/perl")
    inc = subprocess.run([str(perl), "-e", "print join qq{\\n}, @INC"], capture_output=True,
                         text=True).stdout.split()
    modules = [Path(p) for p in inc if Path(p).is_dir()]
    xs = [p for d in modules for p in d.rglob("*.so")]
    version = subprocess.run([str(perl), "-MGearman::Server", "-e",
                              "print $Gearman::Server::VERSION"], capture_output=True,
                             text=True).stdout.strip().lstrip("v") or "latest"
    labels = {
        "org.gearspec.command": json.dumps([str(perl), str(PERL_SERVER), "--port",
                                            "{port}"]),
        "org.gearspec.capabilities": "echo",
        "org.gearspec.baseline": "perl",
    }
    return ([*_with_libraries([perl, PERL_SERVER, *xs]), *modules], ["/tmp"], labels,
            f"gearspec/perl:{version}")


#: The database drivers our queues import (-q postgres, mysql, redis, libmemcached),
#: with what they import in turn; copied from where this Python finds them.
QUEUE_DRIVERS = ("psycopg", "psycopg_binary", "typing_extensions", "pymysql", "redis",
                 "pymemcache")


def queue_drivers() -> tuple[list[Path], list[str]]:
    """The drivers' files (a package's folder, its bundled ``.libs`` beside it) and the
    folders they live in, for PYTHONPATH.  A driver not installed here is left out:
    its queue then says which package it needs, as it does outside the image."""
    files: list[Path] = []
    folders: list[str] = []
    for name in QUEUE_DRIVERS:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        where = list(spec.submodule_search_locations or [])
        path = Path(where[0]) if where else Path(spec.origin)
        files += [path, *path.parent.glob(f"{name}.libs")]
        if str(path.parent) not in folders:
            folders.append(str(path.parent))
    return files, folders


def ref_image() -> tuple[list[Path], list[str], dict[str, str], str]:
    python = Path(sys.executable).resolve()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = Path(sys.base_prefix) / "lib" / f"python{version}"
    packages, folders = queue_drivers()
    labels = {
        "org.gearspec.command": json.dumps([str(python), "-m", "reference_server", "-L",
                                            "{host}", "-p", "{port}",
                                            "-l", "{workdir}/server.log"]),
        "org.gearspec.capabilities": "echo,grab-job-uniq,gearmand-options,persistence,http",
        "org.gearspec.baseline": "ref",
        "org.gearspec.pythonpath": ":".join([str(ROOT), *folders]),
    }
    extensions = sorted((stdlib / "lib-dynload").glob("*.so"))  # _sqlite3, _ssl...
    drivers = [p for path in packages for p in ([path, *path.rglob("*.so*")]
                                                  if path.is_dir() else [path])]
    files = [*_with_libraries([python, *extensions, *drivers]), stdlib,
             ROOT / "reference_server"]
    return files, ["/tmp"], labels, f"gearspec/ref:{__version__}"


#: What the harness needs beyond the project's own dependencies: hypothesis, for
#: ``gearspec fuzz`` in the image (a test extra on the host).
HARNESS_EXTRAS = ("hypothesis",)


def distribution_files(names: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Every file of these installed distributions and of what they require (not
    their extras), metadata included so that versions read the same inside; and the
    folders they are installed in, for PYTHONPATH."""
    from importlib import metadata

    files: list[Path] = []
    folders: list[str] = []
    todo, done = list(names), set()
    while todo:
        name = re.split(r"[\s;<>=!~\[(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if name in done:
            continue
        done.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a platform-only requirement (uvloop on Windows...)
        todo += [r for r in dist.requires or [] if "extra ==" not in r]
        if name != "gearspec":  # an editable install here: the project is copied whole
            folder = str(dist.locate_file(""))
            # Not the scripts RECORD lists as ../../../bin/...: the image runs -m gearspec.
            files += [Path(os.path.normpath(str(dist.locate_file(f)))) for f in dist.files or []
                      if "__pycache__" not in f.parts and ".." not in f.parts]
            if folder not in folders:
                folders.append(folder)
    return files, folders


def harness_image() -> tuple[list[Path], list[str], dict[str, str], str]:
    """gearspec itself: ``docker run --network host gearspec/gearspec:V run --target
    tcp://127.0.0.1:4730``, writing its reports under the mounted ``/out``."""
    python = Path(sys.executable).resolve()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = Path(sys.base_prefix) / "lib" / f"python{version}"
    installed, folders = distribution_files(["gearspec", *HARNESS_EXTRAS])
    labels = {"org.gearspec.pythonpath": ":".join([str(ROOT), *folders]),
              "org.gearspec.entrypoint": json.dumps([str(python), "-m", "gearspec"])}
    extensions = sorted((stdlib / "lib-dynload").glob("*.so"))
    project = [ROOT / name for name in ("gearspec", "conformance", "reference_server",
                                        "results", "reports", "fuzz")]
    return ([*_with_libraries([python, *extensions, *installed]), stdlib, *project],
            ["/tmp", "/out"], labels, f"gearspec/gearspec:{__version__}")


IMAGES = {"gearmand": gearmand_image, "perl": perl_image, "ref": ref_image,
          "gearspec": harness_image}


def build(kind: str) -> str:
    """Build one image; its tag."""
    files, dirs, labels, tag = IMAGES[kind]()
    engine = client()
    with tempfile.TemporaryDirectory(prefix="gearspec-image-") as tmp:
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            seen: set[str] = set()
            made: set[str] = set()
            for directory in dirs:  # first: /tmp is also the parent of a checkout there
                _directory(tar, Path(directory), made, 0o1777)
            for path in files:
                # Directories, even where the host has a symlink (/lib -> usr/lib on a
                # merged-/usr Debian): the link's target may not be in the image.
                for parent in reversed(path.parents[:-1]):
                    _directory(tar, parent, made)
                _add(tar, path, seen, made)
        changes = [f"LABEL {key}={json.dumps(value)}" for key, value in labels.items()]
        if "org.gearspec.pythonpath" in labels:
            changes.append(f"ENV PYTHONPATH={labels['org.gearspec.pythonpath']}")
        if "org.gearspec.entrypoint" in labels:
            changes += [f"ENTRYPOINT {labels['org.gearspec.entrypoint']}", "WORKDIR /out"]
        repository, _, version = tag.partition(":")
        try:
            previous = engine.images.get(tag).id
        except Exception:
            previous = None
        try:
            engine.api.import_image_from_file(str(archive), repository=repository,
                                              tag=version, changes=changes)
        except Exception as error:  # docker.errors.APIError: say it in one line
            raise TargetError(f"the engine refused {tag}: "
                              f"{getattr(error, 'explanation', None) or error}") from None
    if previous is not None and previous != engine.images.get(tag).id:
        # The image this tag named before is now nameless: nothing should be left over.
        with contextlib.suppress(Exception):
            engine.images.remove(previous)
    return tag



def main(argv: list[str] | None = None, prog: str = "gearspec docker") -> int:
    parser = Parser(prog=prog, description=__doc__.split("\n\n")[0], allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    make = commands.add_parser("build", help="build server images, or the harness's "
                               "(gearspec), from what is installed")
    make.add_argument("kind", nargs="+", choices=sorted(IMAGES))
    try:
        args = parser.parse_args(argv)
        for kind in args.kind:
            print(f"built {build(kind)}")
    except (UsageError, TargetError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return 0
