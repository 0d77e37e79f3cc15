"""Verbs about time and the target itself: sleep, restart, kill, a refused connection."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import ClassVar

from conformance.context import Context, HarnessError, failed
from conformance.scenario import Step
from conformance.verbs.record import Form, Verb, Written
from reference_server.protocol import PacketType, encode


@dataclass
class Sleep(Step):
    seconds: float = 0.0


def _read_sleep(written: Written) -> Sleep:
    if written.args is None:
        raise written.error("write 'sleep: SECONDS'")
    return Sleep(written.line, seconds=written.reader.number(written.args, written.where))


async def _sleep(ctx: Context, step: Sleep) -> None:
    await ctx.clock.sleep(step.seconds * ctx.factor)


SLEEP = Verb(name="sleep", step=Sleep, connection="", usage="sleep: SECONDS: wait",
             read=_read_sleep, write=lambda step: Form(step.seconds), perform=_sleep)


@dataclass
class TargetAction(Step):
    action: str = "restart"  # "restart" or "kill" (kill: the next step should notice)

    needs: ClassVar[frozenset[str]] = frozenset({"restart"})


def _read_action(action: str):  # type: ignore[no-untyped-def]
    def read(written: Written) -> TargetAction:
        return TargetAction(written.line, conn="target", action=action)
    return read


async def _act(ctx: Context, step: TargetAction) -> None:
    if ctx.control is None:
        raise HarnessError("this target cannot be restarted or killed")
    ctx.transcript.note("target", f"target {step.action}")
    await ctx.control(step.action)


RESTART = Verb(name="restart", step=TargetAction, connection="target", args=False,
               usage="target restart: restart the server (the case then runs alone)",
               read=_read_action("restart"), write=lambda step: Form(verb=step.action),
               perform=_act)
KILL = Verb(name="kill", step=TargetAction, connection="target", args=False,
            usage="target kill: SIGKILL the server (the next step should notice)",
            read=_read_action("kill"), write=lambda step: Form(verb=step.action), perform=_act)


@dataclass
class ExpectRefused(Step):
    """Opening this connection fails: refused, or its TLS handshake fails."""


async def _refused(ctx: Context, step: ExpectRefused) -> None:
    mode = (ctx.scenario.tls or {}).get(step.conn)
    try:
        stream = await ctx.network.open(step.conn, mode)
    except (OSError, TimeoutError, ssl.SSLError) as error:
        ctx.transcript.note(step.conn, f"refused: {error}")
        return
    # A TLS 1.3 server may only refuse after the handshake: a refused peer is then
    # closed at once, before any request.
    stream.write(encode(PacketType.ECHO_REQ, b"refused?"))
    data = await stream.read(ctx.clock.now() + ctx.timeout(None))
    await stream.close()
    if data:
        raise failed("the connection refused", "it was accepted and answered",
                     "the connection was accepted and answered")
    ctx.transcript.note(step.conn, "refused: closed before answering" if data == b""
                        else "refused: no answer")


EXPECT_REFUSED = Verb(name="expect-refused", step=ExpectRefused,
                      usage="expect-refused: opening this connection fails (refused, or TLS "
                            "refused)",
                      args=False, read=lambda w: ExpectRefused(w.line, w.conn, w.note),
                      write=lambda step: Form(), perform=_refused)

VERBS = (SLEEP, RESTART, KILL, EXPECT_REFUSED)
