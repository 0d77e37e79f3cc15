"""The verb table and its pure expectations, without a server or a socket.

Each verb is one record: these tests read a step of every verb from data, write it
back, read it again, and judge expectations on events made up here (h11's tests
drive its state machine the same way).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.events import Closed, Data, Stalled, Synced, TimedOut
from conformance.loader import load_step
from conformance.match import PENDING, Met, Scope, Unmet
from conformance.scenario import ScenarioError
from conformance.verbs import BY_STEP, VERBS, describe_step, step_data, verb_of
from conformance.verbs.alternatives import describes
from conformance.verbs.expect import expect_list, expect_nothing, expect_packet
from conformance.verbs.http import expect_http
from reference_server.protocol import Magic, Packet, PacketType, TextLine

T = PacketType
README = Path(__file__).resolve().parent.parent / "conformance" / "scenarios" / "README.md"

#: One step of every verb, as a file writes it.
SAMPLES = {
    "send": {"c send SUBMIT_JOB": {"function": "$fn", "unique": "$u", "data": "a\0b"},
             "magic": "RES"},
    "send-raw": {"c send-raw": {"magic": "\0XYZ", "type": 7, "length": 99, "payload": "x"}},
    "send-line": {"a send-line": "status"},
    "send-text": {"a send-text": "status\r\n"},
    "hangup": "c hangup",
    "finish": {"c finish": None, "within": 1.5},
    "expect": {"c expect JOB_CREATED": {"handle": "$h"}, "within": 3.0, "note": "new"},
    "expect-line": {"a expect-line": {"match": "OK .*\n"}},
    "expect-lines": {"a expect-lines": ["a\n", "b\n"]},
    "expect-list": {"a expect-list": {"rows": ["$fn\t1\t0\t1\n"], "filter": ["$fn\t"],
                                      "ordered": True}},
    "expect-closed": "c expect-closed",
    "expect-nothing": "c expect-nothing",
    "expect-stalled": "c expect-stalled",
    "expect-silence": {"c expect-silence": 0.5},
    "expect-one-of": {"c expect-one-of": [
        {"verdict": "PASS", "note": "answered", "expect": ["c expect ERROR"]},
        {"verdict": "FAIL", "expect": ["c expect-stalled"]}]},
    "http-request": {"h http-request": {"method": "PUT", "path": "/$fn",
                                        "headers": ["X-Gearman-Unique: $u"], "body": "hi"}},
    "http-send": {"h http-send": "\r\nPOST /$fn HTTP/1.0\r\n\r\n"},
    "expect-http": {"h expect-http": {"status": 200, "headers": {"X-Gearman-Command":
                                                                 "WORK_COMPLETE"}, "body": "ih"}},
    "sleep": {"sleep": 0.2},
    "target restart": "target restart",
    "target kill": "target kill",
    "expect-refused": "x expect-refused",
    "app reports": {"app reports complete": {"job": "0", "data": "olleh"}, "within": 5.0},
    "app finishes": "app finishes",
    "app reports-all": {"app reports-all": [{"created": {"handle": "H:x:1"}},
                                            {"data": {"job": "$s0", "data": "a"}}]},
    "expect-grab": {"lib expect-grab": None, "within": 3.0},
    "assign": {"lib assign": {"handle": "H:x:1", "function": "$fn", "data": "x"}},
    "send-together": {"lib send-together": [{"WORK_DATA": {"handle": "H:x:1", "data": "a"}},
                                            {"WORK_COMPLETE": {"handle": "H:x:1"}}]},
    "keeps-idle": {"lib keeps-idle": {"seconds": 1.0, "at-most": 20.0}},
    "listener restart": {"listener restart": {"down": 0.5}},
}
#: The verbs of the server the harness plays: read in a library case.
LIBRARY_ONLY = {"expect-grab", "assign", "send-together", "keeps-idle", "listener restart"}


def test_every_verb_has_a_sample_and_a_line_in_the_scenarios_readme() -> None:
    assert set(SAMPLES) == set(VERBS)
    readme = README.read_text()
    for name in VERBS:
        word = name.split()[-1]
        assert f" {word}" in readme or f"`{word}" in readme, name


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_verb_reads_writes_and_reads_back_the_same_step(name: str) -> None:
    mode = "library" if name in LIBRARY_ONLY else "server"
    step = load_step(SAMPLES[name], mode=mode)
    assert verb_of(step) is BY_STEP[type(step)]
    assert step_data(step) == SAMPLES[name]
    again = load_step(step_data(step), mode=mode)
    assert again == step
    assert describe_step(step)


def test_a_typo_in_generated_data_names_the_field() -> None:
    with pytest.raises(ScenarioError, match=r"step\.ECHO_REQ\.dat: ECHO_REQ has no field"):
        load_step({"c send ECHO_REQ": {"dat": "x"}}, origin="fuzz")


def scope(**variables: bytes) -> Scope:
    return Scope(variables, "t_")


def res(kind: PacketType, *args: bytes) -> Packet:
    return Packet(kind, args, Magic.RES)


def test_expect_packet_is_pending_met_or_unmet() -> None:
    step = load_step({"c expect JOB_CREATED": {"handle": "$h"}})
    assert expect_packet(step, [], scope()) is PENDING
    noop = res(T.NOOP)
    met = expect_packet(step, [noop, res(T.JOB_CREATED, b"H:x:1")], scope())
    assert met == Met(2, {"h": b"H:x:1"})
    unmet = expect_packet(step, [res(T.JOB_CREATED, b"H:x:2")], scope(h=b"H:x:1"))
    assert unmet == Unmet("H:x:1", "H:x:2", "JOB_CREATED.handle")
    assert unmet.message == "JOB_CREATED.handle: expected H:x:1, got H:x:2"
    late = expect_packet(step, [TimedOut(2.0)], scope())
    assert isinstance(late, Unmet) and late.message == \
        "nothing arrived within 2.0 s while waiting for JOB_CREATED"
    wrong = expect_packet(step, [res(T.NO_JOB)], scope())
    assert isinstance(wrong, Unmet) and (wrong.expected, wrong.actual) == ("JOB_CREATED",
                                                                           "NO_JOB")


def test_expect_list_matches_rows_in_any_order_and_binds() -> None:
    step = load_step({"a expect-list": {"rows": [{"match": r"$fn\t(\d)\t0\t1\n",
                                                  "capture": "row"}, "$fn2\t0\t0\t0\n"],
                                        "filter": ["$fn\t", "$fn2\t"]}})
    rows = [TextLine(b"t_fn2\t0\t0\t0"), TextLine(b"other\t1\t1\t1"),
            TextLine(b"t_fn\t3\t0\t1"), TextLine(b".")]
    assert expect_list(step, rows[:2], scope(fn=b"t_fn", fn2=b"t_fn2")) is PENDING
    met = expect_list(step, rows, scope(fn=b"t_fn", fn2=b"t_fn2"))
    assert isinstance(met, Met) and met.consumed == 4
    assert met.variables["row"] == b"t_fn\t3\t0\t1\n"
    fewer = expect_list(step, [rows[0], rows[3]], scope(fn=b"t_fn", fn2=b"t_fn2"))
    assert isinstance(fewer, Unmet) and fewer.expected == "2 rows"


def test_expect_nothing_and_alternatives_judge_what_came_before_the_marker() -> None:
    nothing = load_step("c expect-nothing")
    assert isinstance(expect_nothing(nothing, [Synced()], scope()), Met)
    late = expect_nothing(nothing, [res(T.ECHO_RES, b"x"), Stalled()], scope())
    assert isinstance(late, Unmet) and late.message == \
        "expected nothing, got ECHO_RES data=x (then no answer to the ECHO_REQ sent to check)"
    one_of = load_step(SAMPLES["expect-one-of"])
    answered, stalled = one_of.alternatives  # type: ignore[attr-defined]
    error = res(T.ERROR, b"ERR", b"bad")
    assert isinstance(describes(answered, [error, Synced()], scope()), Met)
    assert isinstance(describes(answered, [error, error, Synced()], scope()), Unmet)
    assert isinstance(describes(stalled, [Stalled()], scope()), Met)
    assert isinstance(describes(stalled, [Closed()], scope()), Unmet)


def test_expect_http_waits_for_the_close() -> None:
    step = load_step(SAMPLES["expect-http"])
    head = b"HTTP/1.0 200 OK\r\nX-Gearman-Command: WORK_COMPLETE\r\nContent-Length: 2\r\n\r\n"
    assert expect_http(step, [Data(head)], scope()) is PENDING
    assert expect_http(step, [Data(head), Data(b"ih")], scope()) is PENDING
    assert isinstance(expect_http(step, [Data(head + b"ih"), Closed()], scope()), Met)
    wrong = expect_http(step, [Data(head + b"hi"), Closed()], scope())
    assert isinstance(wrong, Unmet) and wrong.where == "HTTP body"
    open_ = expect_http(step, [Data(head + b"ih"), TimedOut(2.0)], scope())
    assert isinstance(open_, Unmet) and "stayed open" in open_.message
