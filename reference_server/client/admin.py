"""``Admin``: the text protocol (``status``, ``workers``, ...) on its own connection."""

from __future__ import annotations

from reference_server.client.link import Link
from reference_server.protocol import LIST_COMMANDS


class Admin:
    """The text protocol on its own connection."""

    def __init__(self, link: Link) -> None:
        self.link = link

    @classmethod
    async def connect(cls, address: str | tuple[str, int], *, timeout: float = 5.0) -> Admin:
        return cls(await Link.open(address, timeout=timeout))

    async def __aenter__(self) -> Admin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.link.close()

    async def command(self, line: str, *, timeout: float = 5.0) -> bytes:
        """The raw reply to one admin command, line endings included."""
        self.link.send_raw(line.encode() + b"\n")
        first = await self.link.read_until(b"\n", timeout)
        words = line.split()
        if not words or words[0].lower() not in LIST_COMMANDS or first.startswith(b"ERR "):
            return first
        reply = first
        while not reply.endswith(b"\n.\n") and reply != b".\n":
            reply += await self.link.read_until(b"\n", timeout)
        return reply

    async def status(self) -> dict[bytes, tuple[int, int, int]]:
        """function → (total jobs, running jobs, workers)."""
        rows = (await self.command("status")).split(b"\n")[:-2]
        result = {}
        for row in rows:
            name, total, running, workers = row.rsplit(b"\t", 3)
            result[name] = (int(total), int(running), int(workers))
        return result
