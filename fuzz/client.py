"""Fuzzing a client library's parser: generated server streams, played through its adapter.

What ``fuzz server`` does for servers, for the other side: each example is a
library case (``library:``) whose server side is drawn by hypothesis.  The
application submits one or two jobs; the server answers each with JOB_CREATED
and then writes every job's updates and result (WORK_DATA, WORK_WARNING,
WORK_STATUS, then WORK_COMPLETE or WORK_FAIL, with payloads that hold NULs and
bytes that are not UTF-8), the jobs' packets interleaved in any order and the
whole stream cut into writes at arbitrary bytes; now and then a broken packet
(a wrong magic, an unknown type, a length that never comes) ends the stream,
and the server hangs up.

The property, written into the case itself as expectations, so that a
finding is the scenario that ``gearspec run --scenario FILE --client NAME``
replays: each job's outcome reaches the application intact (created, each
update in order, the result) or, after a broken packet, the application is
told of an error, within the case's budget, and the adapter's process stays
alive.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from conformance.loader import load_case
from conformance.runner import RunOptions, TargetRun
from conformance.scenario import Scenario
from conformance.targets import Target
from reference_server.protocol import Magic, PacketType, encode, frame

T = PacketType
_cases = itertools.count()
payloads = st.sampled_from([b"", b"x", b"a\0b", b"\xff\xfe", b"caf\xc3\xa9", b"\0", b"zz" * 40])


@dataclass(frozen=True)
class Answer:
    """One packet the server writes after the jobs are created."""

    job: int
    kind: PacketType
    data: bytes = b""
    numbers: tuple[int, int] = (0, 0)

    def wire(self, handle: bytes) -> bytes:
        if self.kind == T.WORK_STATUS:
            return encode(T.WORK_STATUS, handle, b"%d" % self.numbers[0],
                          b"%d" % self.numbers[1], magic=Magic.RES)
        if self.kind == T.WORK_FAIL:
            return encode(T.WORK_FAIL, handle, magic=Magic.RES)
        return encode(self.kind, handle, self.data, magic=Magic.RES)

    def event(self) -> Any:
        """What the application must see of it (an ``app reports-all`` item): of the job
        whose submit got this answer's handle (``$s0``: the job number that submit's
        workload holds)."""
        name = {T.WORK_DATA: "data", T.WORK_WARNING: "warning", T.WORK_STATUS: "status",
                T.WORK_COMPLETE: "complete", T.WORK_FAIL: "fail"}[self.kind]
        fields: dict[str, str] = {"job": f"$s{self.job}"}
        if self.kind == T.WORK_STATUS:
            fields |= {"numerator": str(self.numbers[0]), "denominator": str(self.numbers[1])}
        elif self.kind != T.WORK_FAIL:
            fields["data"] = self.data.decode("latin-1").replace("$", "$$")
        return {name: fields}


def _job(job: int) -> st.SearchStrategy[list[Answer]]:
    update = st.one_of(
        st.builds(lambda d: Answer(job, T.WORK_DATA, d), payloads),
        st.builds(lambda d: Answer(job, T.WORK_WARNING, d), payloads),
        st.builds(lambda n, d: Answer(job, T.WORK_STATUS, numbers=(n, d)),
                  st.integers(0, 10), st.integers(0, 4294967295)))
    end = st.one_of(st.builds(lambda d: Answer(job, T.WORK_COMPLETE, d), payloads),
                    st.just(Answer(job, T.WORK_FAIL)))
    return st.tuples(st.lists(update, max_size=4), end).map(lambda pair: [*pair[0], pair[1]])


BROKEN = {
    "wrong magic": frame(b"\0XYZ", T.WORK_DATA, b"H:fz:1\0x"),
    "unknown type": frame(b"\0RES", 99, b""),
    "length that never comes": frame(b"\0RES", T.WORK_DATA, b"H:fz:1\0", length=4000),
}


@dataclass(frozen=True)
class Stream:
    """One example: the jobs, the order their answers are written in, where the
    stream is cut, and perhaps a broken packet ending it."""

    answers: tuple[tuple[Answer, ...], ...]  # per job, in its own order
    order: tuple[int, ...]  # which job's next answer comes next
    cuts: tuple[int, ...]  # byte offsets the writes end at
    broken: str | None

    def merged(self) -> list[Answer]:
        queues = [list(a) for a in self.answers]
        return [queues[job].pop(0) for job in self.order]


@st.composite
def streams(draw: st.DrawFn, concurrent: bool = True) -> Stream:
    jobs = draw(st.integers(1, 2)) if concurrent else 1
    answers = tuple(tuple(draw(_job(job))) for job in range(jobs))
    order = draw(st.permutations([job for job, a in enumerate(answers) for _ in a]))
    # Each job's answers stay in their order: only the jobs' interleaving is drawn.
    length = sum(len(x.wire(b"H:fz:1")) for a in answers for x in a)
    cuts = tuple(sorted(set(draw(st.lists(st.integers(1, max(length - 1, 1)), max_size=6)))))
    broken = draw(st.one_of(st.none(), st.sampled_from(sorted(BROKEN)))) \
        if draw(st.integers(0, 4)) == 0 else None
    return Stream(answers, tuple(order), cuts, broken)


def client_scenario(stream: Stream) -> Scenario:
    """The example as a library case, its property as the case's expectations.

    Job j's workload is the text of j, so whichever order the library submits in
    (libgearman sends the newest first), the k-th submit's workload, captured as
    ``$s<k>``, names the job that got handle ``H:fz:<k+1>``."""
    handles = [f"H:fz:{slot + 1}" for slot in range(len(stream.answers))]
    steps: list[Any] = []
    for slot, handle in enumerate(handles):
        steps += [{"lib expect SUBMIT_JOB": {"function": "fz", "data": f"$s{slot}"}},
                  {"lib send JOB_CREATED": {"handle": handle}}]
    merged = stream.merged()
    data = b"".join(a.wire(handles[a.job].encode()) for a in merged)
    for start, end in zip((0, *stream.cuts), (*stream.cuts, len(data))):
        steps += [{"lib send-raw": {"hex": data[start:end].hex(" ")}}, {"sleep": 0.002}]
    # The creations in their own order, apart from the jobs' updates: a library may hand
    # the application a job's first update before its submit call has returned.
    events = [{"created": {"handle": h}} for h in handles] + [a.event() for a in merged]
    if stream.broken is None:
        steps += [{"app reports-all": events}, "app finishes"]
    else:
        steps += [{"lib send-raw": {"hex": BROKEN[stream.broken].hex(" ")}}, "lib hangup",
                  {"app expect-one-of": [
                      {"verdict": "PASS", "note": "every outcome intact; then the error",
                       "expect": [{"app reports-all": events}, "app reports error"]},
                      {"verdict": "PASS", "note": "every outcome intact",
                       "expect": [{"app reports-all": events}]}]}]
    return load_case({
        "case": f"stream-{next(_cases)}", "title": "A server's stream reaches the application "
        "intact, whatever its cuts", "level": "MUST", "source": "gearspec fuzz client",
        "requirement": "Every job's updates and result reach the application intact and in "
                       "order, however the stream is cut into reads and the jobs' packets "
                       "interleaved; a broken packet is reported as an error; the library "
                       "neither hangs nor dies." + (f" (Broken: {stream.broken}.)"
                                                   if stream.broken else ""),
        "sections": ["3.3"],
        "library": {"role": "client",
                    "submit": [{"function": "fz", "workload": str(j)}
                               for j in range(len(handles))]},
        "steps": steps}, "fuzz/client", origin="gearspec fuzz client")


async def check(target: Target, scenario: Scenario) -> str | None:
    """Play one example through the runner; the reason it fails, or None."""
    result = await TargetRun.adopting(target, RunOptions(jobs=1)).play(scenario)
    if result.verdict.value in ("PASS", "UNSUPPORTED"):
        return None
    return f"{result.verdict.value}: {result.message}"


def play(target: Target, stream: Stream) -> tuple[Scenario, str | None]:
    scenario = client_scenario(stream)
    return scenario, asyncio.run(check(target, scenario))
