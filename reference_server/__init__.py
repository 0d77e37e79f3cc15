"""gearspec's reference Gearman job server, and the wire library everything else uses.

* ``reference_server.protocol``: the packet table and the codec;
* ``reference_server.core``: the job server as a sans-IO state machine;
* ``reference_server.net``: the asyncio transport under it;
* ``reference_server.memory``: a memory transport under it, with a clock the
  caller moves (the whole server in a test, without sockets or sleeps);
* ``reference_server.client``: a client and worker library;
* ``reference_server.config``: gearmand's options, parsed, and the core they open;
* ``reference_server.cli``: ``gearspec serve`` / ``python -m reference_server``.
"""

__version__ = "0.1.0"
