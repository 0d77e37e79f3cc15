"""Drive the sans-IO ``JobServer`` by hand: named connections, a settable clock."""

from __future__ import annotations

from reference_server.core import JobServer, ServerOptions
from reference_server.protocol import Decoder, Packet, PacketType, encode


class Sim:
    """``sim.send("w", T.CAN_DO, b"f")``, then ``sim.take("w")`` for what "w" got."""

    def __init__(self, **options: object) -> None:
        self.now = 1_800_000_000.0
        options.setdefault("job_handle_prefix", b"H:test")
        self.server = JobServer(ServerOptions(**options), clock=lambda: self.now)  # type: ignore[arg-type]
        self.ids: dict[str, int] = {}

    def id(self, name: str) -> int:
        if name not in self.ids:
            self.ids[name] = self.server.connect("127.0.0.1")
        return self.ids[name]

    def send(self, name: str, packet_type: PacketType, *args: bytes) -> None:
        self.server.receive(self.id(name), encode(packet_type, *args))

    def raw(self, name: str, data: bytes) -> None:
        self.server.receive(self.id(name), data)

    def bytes(self, name: str) -> bytes:
        return self.server.data_to_send(self.id(name))

    def take(self, name: str) -> list[Packet]:
        """The packets sent to ``name`` since the last take."""
        events = list(Decoder().events(self.bytes(name)))
        assert all(isinstance(e, Packet) for e in events), events
        return events  # type: ignore[return-value]

    def types(self, name: str) -> list[str]:
        return [p.name for p in self.take(name)]

    def admin(self, line: bytes) -> bytes:
        self.raw("admin", line)
        return self.bytes("admin")

    def closed(self, name: str) -> bool:
        return self.server.is_closing(self.id(name))

    def hangup(self, name: str) -> None:
        self.server.disconnect(self.ids.pop(name))

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.server.expire_timers()

    # Shortcuts for the common moves
    def submit(self, name: str, function: bytes = b"f", data: bytes = b"d", unique: bytes = b"",
               kind: PacketType = PacketType.SUBMIT_JOB) -> bytes:
        self.send(name, kind, function, unique, data)
        [created] = [p for p in self.take(name) if p.type == PacketType.JOB_CREATED]
        return created.args[0]

    def grab(self, name: str, kind: PacketType = PacketType.GRAB_JOB_UNIQ) -> Packet:
        self.send(name, kind)
        *_, reply = self.take(name)
        return reply
