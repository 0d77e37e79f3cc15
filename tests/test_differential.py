"""Differential: the same requests to our server and to real gearmand 1.1.20.

Every packet type (0-42), the admin commands and the bad inputs of
protocol section 1 are sent to a fresh ``ref`` and a fresh ``/usr/sbin/gearmand``;
the replies must match byte for byte after normalisation (see
tests/differential.py).  A case whose replies differ must be named in
reference_server/DEVIATIONS.md ("Differential case: `name`"), and a case named
there must still differ, so that list is exactly the set of differences.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conformance.targets import GearmandTarget, RefTarget
from reference_server.protocol import PacketType
from tests.conftest import require_gearmand
from tests.differential import HANDLE_PREFIX, HANGUP, Case, Player, normalise, raw, req

T = PacketType
REQ, RES = b"\0REQ", b"\0RES"
DEVIATIONS = Path(__file__).resolve().parent.parent / "reference_server" / "DEVIATIONS.md"


def H(number: int) -> bytes:
    """The handle of the N-th job a fresh server creates (same host for both)."""
    return HANDLE_PREFIX + b"%d" % number


def submit(kind: PacketType = T.SUBMIT_JOB, function: bytes = b"f", unique: bytes = b"",
           data: bytes = b"x") -> bytes:
    return req(kind, function, unique, data)


GRAB = req(T.GRAB_JOB_UNIQ)


def worker(*functions: bytes) -> bytes:
    return b"".join(req(T.CAN_DO, f) for f in functions or (b"f",))


def admin(line: bytes) -> tuple[str, bytes]:
    return ("admin", line)


CASES = [
    # -- Framing and bad input (protocol section 1) -------------------------------------
    Case("framing/type-0-closes", [("c", raw(REQ, 0, b""))]),
    Case("framing/type-43-closes", [("c", raw(REQ, 43, b""))]),
    Case("framing/type-999-with-data-closes", [("c", raw(REQ, 999, b"abc"))]),
    Case("framing/type-2147483647-closes", [("d", req(T.ECHO_REQ, b"before")),
                                            ("c", raw(REQ, 2**31 - 1, b"")),
                                            ("d", req(T.ECHO_REQ, b"after"))]),
    Case("framing/type-2147483648-closes", [("d", req(T.ECHO_REQ, b"before")),
                                            ("c", raw(REQ, 2**31, b"")),
                                            ("d", req(T.ECHO_REQ, b"after")),
                                            ("e", req(T.ECHO_REQ, b"new"))]),
    Case("framing/bad-magic-closes", [("c", raw(b"\0XYZ", 16, b"x"))]),
    Case("framing/res-magic-error", [("c", raw(RES, T.ECHO_REQ, b"x"))]),
    Case("framing/pipelined-echo", [("c", req(T.ECHO_REQ, b"a") + req(T.ECHO_REQ, b"b")
                                     + req(T.ECHO_REQ, b"c"))]),
    Case("framing/echo-1mib", [("c", req(T.ECHO_REQ, b"x" * (1 << 20)))]),
    Case("framing/extra-payload-ignored", [("c", raw(REQ, T.GRAB_JOB, b"junk"))]),
    Case("framing/submit-without-nul", [("c", raw(REQ, T.SUBMIT_JOB, b"reverse"))]),
    Case("framing/submit-one-nul", [("c", raw(REQ, T.SUBMIT_JOB, b"reverse\0"))]),
    Case("framing/length-over-limit", [("c", raw(REQ, T.ECHO_REQ, b"",
                                                 length=64 * 1024 * 1024 + 1))]),
    Case("framing/text-line-8192-bytes", [("c", b"x" * 8191 + b"\n")]),
    Case("framing/text-line-8193-bytes-closes", [("c", b"x" * 8192 + b"\n")]),
    Case("framing/argument-over-8k", [("c", req(T.CAN_DO, b"f" * 9000) + req(T.GRAB_JOB))]),
    Case("framing/six-tokens-closes", [admin(b"a b c d e f\n")]),
    # -- Packet types gearmand does not accept from peers ---------------------------
    *[Case(f"type-{n:02d}-{PacketType(n).name.lower()}/not-expected",
           [("c", raw(REQ, n, b"\0" * 7 + b"x"))])
      for n in (5, 6, 8, 10, 11, 17, 19, 20, 24, 27, 31, 35, 40, 42)],
    # -- Worker registration ---------------------------------------------------------
    Case("type-01-can_do/status-and-workers", [
        ("w", worker(b"f", b"g")), admin(b"status\n"), admin(b"workers\n")]),
    Case("type-01-can_do/twice-counts-twice", [("w", worker(b"f", b"f")), admin(b"status\n")]),
    Case("type-01-can_do/empty-name", [("w", req(T.CAN_DO, b"") + req(T.GRAB_JOB))]),
    Case("type-02-cant_do/removes", [("w", worker() + req(T.CANT_DO, b"f")),
                                     admin(b"status\n"), admin(b"workers\n")]),
    Case("type-03-reset_abilities/removes-all", [
        ("w", worker(b"f", b"g") + req(T.RESET_ABILITIES)), admin(b"workers\n")]),
    Case("type-22-set_client_id/in-workers", [("w", req(T.SET_CLIENT_ID, b"my id") + worker()),
                                             admin(b"workers\n")]),
    Case("type-23-can_do_timeout/registers", [("w", req(T.CAN_DO_TIMEOUT, b"f", b"5000")),
                                             admin(b"status\n")]),
    Case("type-23-can_do_timeout/overlong-number-closes", [
        ("w", req(T.CAN_DO_TIMEOUT, b"f", b"1" * 21))], racy_close=True),
    Case("type-23-can_do_timeout/job-assigned", [
        ("c", submit()), ("w", req(T.CAN_DO_TIMEOUT, b"f", b"60000") + GRAB),
        admin(b"status\n")]),
    # -- Sleeping and waking ---------------------------------------------------------
    Case("type-04-pre_sleep/noop-on-submit", [
        ("w", worker() + req(T.GRAB_JOB) + req(T.PRE_SLEEP)), ("c", submit()),
        ("c", submit())]),
    Case("type-04-pre_sleep/noop-at-once-when-work-waits", [
        ("c", submit()), ("w", worker() + req(T.PRE_SLEEP))]),
    Case("type-04-pre_sleep/other-function-no-noop", [
        ("w", worker(b"g") + req(T.PRE_SLEEP)), ("c", submit())]),
    # -- Submitting and grabbing -----------------------------------------------------
    Case("type-07-submit_job/round-trip", [
        ("c", submit(data=b"hello")), ("w", worker() + req(T.GRAB_JOB)),
        ("w", req(T.WORK_COMPLETE, H(1), b"olleh"))]),
    Case("type-07-submit_job/empty-function", [("c", submit(function=b""))]),
    Case("type-07-submit_job/function-600-bytes", [("c", submit(function=b"f" * 600)),
                                                  admin(b"status\n")]),
    Case("type-07-submit_job/data-with-nuls", [
        ("c", submit(data=b"a\0b\0")), ("w", worker() + GRAB)]),
    Case("type-07-submit_job/unique-65-refused", [("c", submit(unique=b"u" * 65))]),
    Case("type-07-submit_job/unique-64", [("c", submit(unique=b"u" * 64)),
                                         admin(b"show unique jobs\n")]),
    Case("type-18-submit_job_bg/round-trip", [
        ("c", submit(T.SUBMIT_JOB_BG)), admin(b"show jobs\n"),
        ("w", worker() + GRAB), ("w", req(T.WORK_COMPLETE, H(1), b"r")), admin(b"status\n")]),
    Case("type-21-submit_job_high/round-trip", [
        ("c", submit(T.SUBMIT_JOB_HIGH)), ("w", worker() + GRAB),
        ("w", req(T.WORK_COMPLETE, H(1), b"r"))]),
    Case("type-32-submit_job_high_bg/queued", [("c", submit(T.SUBMIT_JOB_HIGH_BG)),
                                               admin(b"prioritystatus\n")]),
    Case("type-33-submit_job_low/round-trip", [
        ("c", submit(T.SUBMIT_JOB_LOW)), ("w", worker() + GRAB),
        ("w", req(T.WORK_COMPLETE, H(1), b"r"))]),
    Case("type-34-submit_job_low_bg/queued", [("c", submit(T.SUBMIT_JOB_LOW_BG)),
                                              admin(b"prioritystatus\n")]),
    Case("type-31-job_assign_uniq/unique-64-bytes", [
        ("c", submit(T.SUBMIT_JOB_BG, unique=b"u" * 64, data=b"DATA") * 2),
        ("w", worker() + GRAB)]),
    Case("priority/order-high-normal-low", [
        ("c", submit(T.SUBMIT_JOB_LOW, data=b"low") + submit(data=b"normal")
         + submit(T.SUBMIT_JOB_HIGH, data=b"high")),
        ("w", worker() + GRAB + GRAB + GRAB)]),
    Case("priority/background-order", [
        ("c", submit(T.SUBMIT_JOB_LOW_BG, data=b"low") + submit(T.SUBMIT_JOB_BG, data=b"n")
         + submit(T.SUBMIT_JOB_HIGH_BG, data=b"high")),
        admin(b"prioritystatus\n"), ("w", worker() + GRAB + GRAB + GRAB)]),
    Case("priority/per-function-newest-registration-first", [
        ("c", submit(T.SUBMIT_JOB_HIGH_BG, function=b"old") + submit(T.SUBMIT_JOB_BG,
                                                                      function=b"new")),
        ("w", worker(b"old", b"new") + GRAB + GRAB)]),
    Case("priority/round-robin", [
        ("c", submit(T.SUBMIT_JOB_BG, function=b"a") * 2 + submit(T.SUBMIT_JOB_BG,
                                                                  function=b"b") * 2),
        ("w", worker(b"a", b"b") + GRAB * 4)], options=["-R"]),
    Case("type-09-grab_job/no-can-do", [("w", req(T.GRAB_JOB))]),
    Case("type-30-grab_job_uniq/no-can-do", [("w", req(T.GRAB_JOB_UNIQ))]),
    Case("type-39-grab_job_all/no-can-do", [("w", req(T.GRAB_JOB_ALL))]),
    Case("type-39-grab_job_all/plain-job-as-uniq", [
        ("c", submit(unique=b"u")), ("w", worker() + req(T.GRAB_JOB_ALL))]),
    Case("type-37-submit_reduce_job/assign-all", [
        ("c", req(T.SUBMIT_REDUCE_JOB, b"f", b"u", b"reducer", b"", b"data")),
        ("w", worker() + req(T.GRAB_JOB_ALL)), ("w", req(T.WORK_COMPLETE, H(1), b"r"))]),
    Case("type-38-submit_reduce_job_background/stored", [
        ("c", req(T.SUBMIT_REDUCE_JOB_BACKGROUND, b"f", b"u", b"r", b"", b"d")),
        admin(b"show jobs\n"), ("w", worker() + req(T.GRAB_JOB))]),
    Case("type-37-submit_reduce_job/unique-65", [
        ("c", req(T.SUBMIT_REDUCE_JOB, b"f", b"u" * 65, b"r", b"", b"d"))]),
    Case("type-36-submit_job_epoch/past-runs", [
        ("c", req(T.SUBMIT_JOB_EPOCH, b"f", b"", b"1000", b"d")), ("w", worker() + GRAB)]),
    Case("type-36-submit_job_epoch/future-waits", [
        ("c", req(T.SUBMIT_JOB_EPOCH, b"f", b"", b"4102444800", b"d")),
        ("w", worker() + GRAB + req(T.PRE_SLEEP)), admin(b"status\n"),
        admin(b"prioritystatus\n")]),
    Case("type-36-submit_job_epoch/not-a-number-runs", [
        ("c", req(T.SUBMIT_JOB_EPOCH, b"f", b"", b"soon", b"d")), ("w", worker() + GRAB)]),
    Case("type-36-submit_job_epoch/overflow-closes", [
        ("c", req(T.SUBMIT_JOB_EPOCH, b"f", b"", b"9" * 30, b"d"))], racy_close=True),
    # -- Unique ids ------------------------------------------------------------------
    Case("unique/foreground-coalesce", [
        ("a", submit(unique=b"u", data=b"x")), ("b", submit(unique=b"u", data=b"y")),
        ("w", worker() + GRAB + GRAB), ("w", req(T.WORK_COMPLETE, H(1), b"done"))]),
    Case("unique/background-coalesce", [("c", submit(T.SUBMIT_JOB_BG, unique=b"u") * 2)]),
    Case("unique/dash-uses-data", [
        ("c", submit(T.SUBMIT_JOB_BG, unique=b"-", data=b"same") * 2
         + submit(T.SUBMIT_JOB_BG, unique=b"-", data=b"other"))]),
    Case("unique/empty-never-coalesces", [("c", submit(T.SUBMIT_JOB_BG) * 2)]),
    Case("unique/join-running-job", [
        ("a", submit(unique=b"u")), ("w", worker() + GRAB),
        ("w", req(T.WORK_DATA, H(1), b"early")), ("b", submit(unique=b"u")),
        ("w", req(T.WORK_COMPLETE, H(1), b"end"))]),
    Case("unique/same-connection-twice", [
        ("a", submit(unique=b"u") * 2), ("w", worker() + GRAB),
        ("w", req(T.WORK_COMPLETE, H(1), b"r"))]),
    # -- Work results ----------------------------------------------------------------
    Case("type-12-work_status/forward-and-get-status", [
        ("c", submit()), ("w", worker() + GRAB), ("w", req(T.WORK_STATUS, H(1), b"3", b"10")),
        ("c", req(T.GET_STATUS, H(1)))]),
    Case("type-12-work_status/atoi-numbers", [
        ("c", submit()), ("w", worker() + GRAB), ("w", req(T.WORK_STATUS, H(1), b"12ab", b"x")),
        ("c", req(T.GET_STATUS, H(1)))]),
    Case("type-12-work_status/long-denominator-closes", [
        ("c", submit()), ("w", worker() + GRAB),
        ("w", req(T.WORK_STATUS, H(1), b"1", b"123456789012"))], racy_close=True),
    Case("type-28-work_data/forward", [
        ("c", submit()), ("w", worker() + GRAB), ("w", req(T.WORK_DATA, H(1), b"part\0"))]),
    Case("type-29-work_warning/forward", [
        ("c", submit()), ("w", worker() + GRAB), ("w", req(T.WORK_WARNING, H(1), b"careful"))]),
    Case("type-14-work_fail/forward", [
        ("c", submit()), ("w", worker() + GRAB), ("w", req(T.WORK_FAIL, H(1))),
        ("c", req(T.GET_STATUS, H(1)))]),
    Case("type-25-work_exception/without-option", [
        ("c", submit()), ("w", worker() + GRAB), ("w", req(T.WORK_EXCEPTION, H(1), b"boom")),
        ("w", req(T.WORK_FAIL, H(1)))]),
    Case("type-25-work_exception/with-option", [
        ("c", req(T.OPTION_REQ, b"exceptions") + submit()), ("w", worker() + GRAB),
        ("w", req(T.WORK_EXCEPTION, H(1), b"boom"))]),
    Case("type-25-work_exception/server-exceptions-flag", [
        ("c", submit()), ("w", worker() + GRAB), ("w", req(T.WORK_EXCEPTION, H(1), b"boom"))],
        options=["--exceptions"]),
    *[Case(f"type-{kind:02d}-{kind.name.lower()}/unknown-handle",
           [("w", req(kind, b"H:nope:1", *extra))])
      for kind, extra in ((T.WORK_STATUS, (b"1", b"2")), (T.WORK_COMPLETE, (b"r",)),
                          (T.WORK_FAIL, ()), (T.WORK_DATA, (b"d",)), (T.WORK_WARNING, (b"d",)),
                          (T.WORK_EXCEPTION, (b"e",)))],
    Case("work/foreign-worker-refused", [
        ("c", submit()), ("w", worker() + GRAB), ("x", req(T.WORK_COMPLETE, H(1), b"r"))]),
    Case("type-14-work_fail/handle-64-bytes", [("w", req(T.WORK_FAIL, b"H" * 64))]),
    # -- Status ----------------------------------------------------------------------
    Case("type-15-get_status/unknown", [("c", req(T.GET_STATUS, b"H:nope:1"))]),
    Case("type-15-get_status/queued-and-running", [
        ("c", submit(T.SUBMIT_JOB_BG) + req(T.GET_STATUS, H(1))), ("w", worker() + GRAB),
        ("c", req(T.GET_STATUS, H(1)))]),
    Case("type-15-get_status/handle-64-closes", [("c", req(T.GET_STATUS, b"H" * 64))],
         racy_close=True),
    Case("type-41-get_status_unique/unknown", [("c", req(T.GET_STATUS_UNIQUE, b"nouniq"))]),
    Case("type-41-get_status_unique/background-job", [
        ("c", submit(T.SUBMIT_JOB_BG, unique=b"u1") + req(T.GET_STATUS_UNIQUE, b"u1"))]),
    Case("type-41-get_status_unique/waiting-client", [
        ("c", submit(unique=b"u1")), ("x", req(T.GET_STATUS_UNIQUE, b"u1"))]),
    Case("type-41-get_status_unique/64-closes", [("c", req(T.GET_STATUS_UNIQUE, b"u" * 64))],
         racy_close=True),
    # -- Options and echo ------------------------------------------------------------
    Case("type-16-echo_req/hello-and-empty", [("c", req(T.ECHO_REQ, b"hello")
                                              + req(T.ECHO_REQ, b""))]),
    Case("type-26-option_req/exceptions", [("c", req(T.OPTION_REQ, b"exceptions"))]),
    Case("type-26-option_req/case-insensitive", [("c", req(T.OPTION_REQ, b"Exceptions"))]),
    Case("type-26-option_req/unknown", [("c", req(T.OPTION_REQ, b"bogus"))]),
    # -- Lost workers, lost clients, retries ----------------------------------------
    Case("worker/disconnect-requeues", [
        ("c", submit()), ("w", worker() + GRAB), ("w2", worker() + req(T.PRE_SLEEP)),
        ("w", HANGUP), ("w2", GRAB), ("w2", req(T.WORK_COMPLETE, H(1), b"second"))]),
    Case("worker/cant-do-requeues", [
        ("c", submit()), ("w", worker() + GRAB), ("w", req(T.CANT_DO, b"f")),
        ("w", req(T.WORK_COMPLETE, H(1), b"late")), admin(b"show jobs\n")]),
    Case("worker/job-retries-drop", [
        ("c", submit()), ("w", worker() + GRAB), ("w", HANGUP), ("v", worker() + GRAB),
        ("v", HANGUP), admin(b"status\n")], options=["-j", "2"]),
    Case("client/disconnect-drops-queued-job", [
        ("c", submit()), ("c", HANGUP), admin(b"show jobs\n"), ("w", worker() + GRAB),
        admin(b"status\n")]),
    Case("client/disconnect-running-job-finishes", [
        ("c", submit()), ("w", worker() + GRAB), ("c", HANGUP),
        ("w", req(T.WORK_COMPLETE, H(1), b"r")), admin(b"status\n")]),
    Case("client/background-join-then-leave", [
        ("a", submit(unique=b"u")), ("b", submit(T.SUBMIT_JOB_BG, unique=b"u")),
        ("a", HANGUP), ("w", worker() + GRAB)]),
    Case("client/foreground-join-background-then-leave", [
        ("b", submit(T.SUBMIT_JOB_BG, unique=b"u")), ("a", submit(unique=b"u")),
        ("a", HANGUP), ("w", worker() + GRAB)]),
    Case("client/submit-onto-abandoned-job", [
        ("a", submit(unique=b"u")), ("a", HANGUP), ("b", submit(unique=b"u")),
        ("w", worker() + GRAB)]),
    Case("priority/future-epoch-and-low", [
        ("c", req(T.SUBMIT_JOB_EPOCH, b"f", b"", b"4102444800", b"later")
         + submit(T.SUBMIT_JOB_LOW_BG, data=b"low")), ("w", worker() + GRAB)]),
    # -- Admin protocol (protocol section 4) --------------------------------------------
    Case("admin/status-empty", [admin(b"status\n")]),
    Case("admin/status-uppercase-crlf", [("w", worker()), admin(b"STATUS\r\n")]),
    Case("admin/workers", [("w", worker(b"f", b"g")), admin(b"workers\n")]),
    Case("admin/version", [admin(b"version\n")]),
    Case("admin/getpid", [admin(b"getpid\n")]),
    Case("admin/verbose", [admin(b"verbose\n")]),
    Case("admin/unknown", [admin(b"bogus_cmd\n"), admin(b"jobs\n"), admin(b"\n")]),
    Case("admin/shutdown-unknown", [admin(b"shutdown\n"), admin(b"shutdown graceful\n")]),
    Case("admin/maxqueue-forms", [
        ("w", worker()), admin(b"maxqueue\n"), admin(b"maxqueue f\n"), admin(b"maxqueue f 1\n"),
        admin(b"maxqueue nosuch 1\n")]),
    Case("admin/maxqueue-full", [
        ("w", worker()), admin(b"maxqueue f 1\n"), ("c", submit(T.SUBMIT_JOB_BG) * 2)]),
    Case("admin/maxqueue-per-priority", [
        ("w", worker()), admin(b"maxqueue f 0 1 0\n"),
        ("c", submit(T.SUBMIT_JOB_HIGH_BG) * 2 + submit(T.SUBMIT_JOB_BG))]),
    Case("admin/show-jobs", [("c", submit(T.SUBMIT_JOB_BG) + submit(unique=b"u")),
                             admin(b"show jobs\n"), admin(b"show unique jobs\n"),
                             admin(b"show foo\n"), admin(b"show\n")]),
    Case("admin/prioritystatus", [
        ("c", submit(T.SUBMIT_JOB_HIGH_BG) + submit(T.SUBMIT_JOB_LOW_BG)), ("w", worker()),
        admin(b"prioritystatus\n")]),
    Case("admin/cancel-queued", [
        ("c", submit()), admin(b"cancel job " + H(1) + b"\n"), admin(b"cancel job H:x:9\n"),
        admin(b"show jobs\n"), ("w", worker() + GRAB), admin(b"status\n")]),
    Case("admin/cancel-running", [
        ("c", submit()), ("w", worker() + GRAB), admin(b"cancel job " + H(1) + b"\n"),
        ("w", req(T.WORK_COMPLETE, H(1), b"late"))]),
    Case("admin/cancel-malformed", [admin(b"cancel foo bar\n"), admin(b"cancel job\n")]),
    Case("admin/create-drop-crlf", [
        admin(b"create function fn\r\n"), admin(b"status\n"), admin(b"drop function FN\r\n"),
        admin(b"drop function fn\r\n"), admin(b"create function\r\n"), admin(b"drop x\r\n")]),
    Case("admin/create-function-bare-newline", [admin(b"create function fn\n"),
                                                admin(b"status\n")]),
    Case("admin/drop-busy-function", [("w", worker()), admin(b"drop function f\r\n")]),
    Case("admin/mixed-with-binary", [("c", b"version\n" + req(T.ECHO_REQ, b"x"))]),
]


def _listed_deviations() -> set[str]:
    return set(re.findall(r"Differential case: `([^`]+)`", DEVIATIONS.read_text()))


def test_case_names_are_unique() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))


def test_every_wire_type_is_covered() -> None:
    covered = {int(m) for c in CASES for m in re.findall(r"type-(\d\d)", c.name)}
    covered |= {0, 43}  # framing cases
    missing = {int(t) for t in PacketType} - covered
    assert not missing, f"no differential case for packet types {sorted(missing)}"


def test_listed_deviations_are_cases() -> None:
    names = {case.name for case in CASES}
    assert _listed_deviations() <= names


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_same_replies_as_gearmand(case: Case) -> None:
    require_gearmand()
    transcripts = []
    for target in (RefTarget(options=case.options), GearmandTarget(options=case.options)):
        with target:
            transcripts.append(normalise(await Player(target).play(case)))
    ours, theirs = transcripts
    if case.racy_close:
        acting = case.steps[-1][0]
        assert ours[-1] == [(acting, "", "closed")], _explain(case, ours, theirs)
        assert theirs[-1] in ([(acting, "", "closed")], []), _explain(case, ours, theirs)
        ours, theirs = ours[:-1], theirs[:-1]
    listed = case.name in _listed_deviations()
    if listed:
        assert ours != theirs, (f"{case.name} is listed in DEVIATIONS.md but now answers "
                                "like gearmand: remove it from the list")
    else:
        assert ours == theirs, _explain(case, ours, theirs)


def _explain(case: Case, ours: list, theirs: list) -> str:  # type: ignore[type-arg]
    lines = [f"{case.name}: replies differ from gearmand (fix, or list it in DEVIATIONS.md)"]
    for index, ((conn, data), mine, real) in enumerate(zip(case.steps, ours, theirs)):
        marker = "  " if mine == real else "!!"
        lines.append(f"{marker} step {index} {conn} sends {data[:60]!r}")
        if mine != real:
            lines.append(f"     ref:      {mine}")
            lines.append(f"     gearmand: {real}")
    return "\n".join(lines)
