"""The sans-IO job server, driven without sockets (fake clock, named connections).

Organised by the sections of the protocol they check; cases that exercise a
decision of ours where gearmand has a bug say DEVIATION and name the entry
in reference_server/DEVIATIONS.md.
"""

from __future__ import annotations

import pytest

from reference_server.core import JobServer, Priority
from reference_server.protocol import Magic, Packet, PacketType, encode, frame
from reference_server.queues import (
    EMPTY_UNIQUE_MARKER,
    BatchingQueue,
    BuiltinQueue,
    QueueError,
    StoredJob,
)
from tests.sim import Sim

T = PacketType


def res(packet_type: PacketType, *args: bytes) -> Packet:
    return Packet(packet_type, args, Magic.RES)


def error(code: bytes, text: bytes) -> Packet:
    return res(T.ERROR, code, text)


class TestWorkedExample:
    def test_protocol_example_byte_for_byte(self) -> None:
        # PROTOCOL "Binary Protocol Example", with gearmand's handle prefix H:lap.
        sim = Sim(job_handle_prefix=b"H:lap")
        sim.raw("w", bytes.fromhex("00524551000000010000000772657665727365"))
        sim.raw("w", bytes.fromhex("005245510000000900000000"))
        assert sim.bytes("w") == bytes.fromhex("005245530000000a00000000")
        sim.raw("w", bytes.fromhex("005245510000000400000000"))
        assert sim.bytes("w") == b""
        sim.raw("c", bytes.fromhex("00524551000000070000000d72657665727365000074657374"))
        assert sim.bytes("c") == bytes.fromhex("005245530000000800000007483a6c61703a31")
        assert sim.bytes("w") == bytes.fromhex("005245530000000600000000")
        sim.raw("w", bytes.fromhex("005245510000000900000000"))
        assert sim.bytes("w") == bytes.fromhex(
            "005245530000000b00000014483a6c61703a31007265766572736500" "74657374")
        sim.raw("w", bytes.fromhex("005245510000000d0000000c483a6c61703a310074736574"))
        assert sim.bytes("c") == bytes.fromhex("005245530000000d0000000c483a6c61703a310074736574")
        assert sim.bytes("w") == b""


class TestFramingErrors:
    """protocol sections 1 and 3.15: how each kind of bad input is answered."""

    def test_res_magic_gets_invalid_magic_and_connection_stays(self) -> None:
        sim = Sim()
        sim.raw("c", frame(b"\0RES", T.ECHO_REQ, b"x"))
        sim.send("c", T.ECHO_REQ, b"y")
        assert sim.take("c") == [error(b"INVALID_MAGIC", b"Request magic expected"),
                                 res(T.ECHO_RES, b"y")]

    @pytest.mark.parametrize("number", [5, 6, 8, 10, 11, 17, 19, 20, 24, 27, 31, 35, 40, 42])
    def test_types_gearmand_does_not_accept(self, number: int) -> None:
        sim = Sim()
        payload = b"\0" * 8  # enough separators for every type's arguments
        sim.raw("c", frame(b"\0REQ", number, payload))
        sim.send("c", T.ECHO_REQ, b"still here")
        assert sim.take("c") == [error(b"INVALID_COMMAND", b"Command not expected"),
                                 res(T.ECHO_RES, b"still here")]

    @pytest.mark.parametrize("data", [
        frame(b"\0XYZ", T.ECHO_REQ, b"x"),  # bad magic
        frame(b"\0REQ", 0, b""),  # type 0 (TEXT) on the wire
        frame(b"\0REQ", 43, b""),
        frame(b"\0REQ", 999, b"abc"),
        b"x" * 8193,  # a text line longer than gearmand's 8 KiB buffer
        b"a b c d e f\n",  # six tokens
    ], ids=["bad-magic", "type-0", "type-43", "type-999", "long-line", "six-tokens"])
    def test_closed_without_a_word(self, data: bytes) -> None:
        sim = Sim()
        sim.raw("c", data)
        assert sim.closed("c")
        assert sim.bytes("c") == b""

    def test_packets_before_the_garbage_are_answered(self) -> None:
        sim = Sim()
        sim.raw("c", encode(T.ECHO_REQ, b"first") + frame(b"\0XYZ", 1, b""))
        assert sim.take("c") == [res(T.ECHO_RES, b"first")]
        assert sim.closed("c")

    def test_too_few_arguments_deviation(self) -> None:
        # DEVIATION "Too few arguments": gearmand stalls; we answer and go on.
        sim = Sim()
        sim.raw("c", frame(b"\0REQ", T.SUBMIT_JOB, b"reverse"))
        sim.send("c", T.ECHO_REQ, b"next")
        assert sim.take("c") == [error(b"INVALID_PACKET", b"Packet has too few arguments"),
                                 res(T.ECHO_RES, b"next")]
        assert sim.server.jobs == {}

    @pytest.mark.parametrize("number", [2**31, 2**31 + 7, 2**32 - 1])
    def test_type_with_top_bit_closes_only_that_connection_deviation(self, number: int
                                                                     ) -> None:
        # DEVIATION "Type numbers of 2^31 and up": unknown like 999, not a crash.
        sim = Sim()
        sim.raw("c", frame(b"\0REQ", number, b"x\0y"))
        assert sim.take("c") == []
        assert sim.closed("c")
        sim.send("d", T.ECHO_REQ, b"still")
        assert sim.take("d") == [res(T.ECHO_RES, b"still")]

    def test_too_large_deviation(self) -> None:
        # DEVIATION "Maximum packet size": ERROR then close, before the body arrives.
        sim = Sim(max_payload=100)
        sim.raw("c", frame(b"\0REQ", T.ECHO_REQ, b"", length=101))
        assert sim.take("c") == [error(b"ARGUMENT_TOO_LARGE",
                                       b"Packet larger than the server accepts")]
        assert sim.closed("c")

    def test_argumentless_packet_payload_is_ignored(self) -> None:
        sim = Sim()
        sim.raw("w", frame(b"\0REQ", T.GRAB_JOB, b"junk"))
        assert sim.types("w") == ["NO_JOB"]


class TestHandles:
    def test_prefix_and_counter(self) -> None:
        sim = Sim(job_handle_prefix=b"P")
        assert sim.submit("c") == b"P:1"
        assert sim.submit("c", kind=T.SUBMIT_JOB_BG) == b"P:2"

    def test_coalesced_submit_does_not_use_a_number(self) -> None:
        sim = Sim()
        assert sim.submit("a", unique=b"u") == b"H:test:1"
        assert sim.submit("b", unique=b"u") == b"H:test:1"
        assert sim.submit("c", unique=b"v") == b"H:test:2"


class TestSubmit:
    @pytest.mark.parametrize(("kind", "priority", "background"), [
        (T.SUBMIT_JOB, Priority.NORMAL, False), (T.SUBMIT_JOB_BG, Priority.NORMAL, True),
        (T.SUBMIT_JOB_HIGH, Priority.HIGH, False), (T.SUBMIT_JOB_HIGH_BG, Priority.HIGH, True),
        (T.SUBMIT_JOB_LOW, Priority.LOW, False), (T.SUBMIT_JOB_LOW_BG, Priority.LOW, True),
    ])
    def test_six_variants(self, kind: PacketType, priority: Priority, background: bool) -> None:
        sim = Sim()
        handle = sim.submit("c", kind=kind)
        job = sim.server.jobs[handle]
        assert (job.priority, job.background, job.persisted) == (priority, background, background)
        assert job.clients == ([] if background else [sim.server.connections[sim.id("c")]])

    def test_unique_over_64_bytes_refused(self) -> None:
        sim = Sim()
        sim.send("c", T.SUBMIT_JOB, b"f", b"u" * 65, b"")
        assert sim.take("c") == [error(b"ARGUMENT_TOO_LARGE", b"Unique value too large")]
        sim.send("c", T.SUBMIT_JOB, b"f", b"u" * 64, b"")
        assert sim.types("c") == ["JOB_CREATED"]

    def test_empty_function_name_is_a_function(self) -> None:
        sim = Sim()
        sim.send("w", T.CAN_DO, b"")
        sim.submit("c", function=b"")
        assert sim.grab("w").args[1] == b""


class TestCoalescing:
    def test_two_foreground_clients_share_the_result(self) -> None:
        sim = Sim()
        handle = sim.submit("a", unique=b"u", data=b"x")
        assert sim.submit("b", unique=b"u", data=b"y") == handle
        sim.send("w", T.CAN_DO, b"f")
        assert sim.grab("w") == res(T.JOB_ASSIGN_UNIQ, handle, b"f", b"u", b"x")
        assert sim.grab("w").type == T.NO_JOB  # one job, not two
        sim.send("w", T.WORK_COMPLETE, handle, b"done")
        assert sim.take("a") == sim.take("b") == [res(T.WORK_COMPLETE, handle, b"done")]

    def test_same_connection_twice_hears_twice(self) -> None:
        sim = Sim()
        handle = sim.submit("a", unique=b"u")
        sim.submit("a", unique=b"u")
        sim.send("w", T.CAN_DO, b"f")
        sim.grab("w")
        sim.send("w", T.WORK_COMPLETE, handle, b"r")
        assert sim.take("a") == [res(T.WORK_COMPLETE, handle, b"r")] * 2

    def test_joining_a_running_job_hears_only_what_follows(self) -> None:
        sim = Sim()
        handle = sim.submit("a", unique=b"u")
        sim.send("w", T.CAN_DO, b"f")
        sim.grab("w")
        sim.send("w", T.WORK_DATA, handle, b"early")
        assert sim.submit("b", unique=b"u") == handle
        sim.send("w", T.WORK_DATA, handle, b"late")
        assert [p.args[1] for p in sim.take("a")] == [b"early", b"late"]
        assert [p.args[1] for p in sim.take("b")] == [b"late"]

    def test_dash_unique_coalesces_on_data(self) -> None:
        sim = Sim()
        one = sim.submit("a", unique=b"-", data=b"same")
        assert sim.submit("b", unique=b"-", data=b"same") == one
        assert sim.submit("c", unique=b"-", data=b"other") != one
        assert sim.submit("d", unique=b"-", data=b"") != sim.submit("e", unique=b"-", data=b"")

    def test_empty_unique_never_coalesces(self) -> None:
        sim = Sim()
        assert sim.submit("a", unique=b"") != sim.submit("a", unique=b"")

    def test_per_function(self) -> None:
        sim = Sim()
        assert sim.submit("a", function=b"f", unique=b"u") != sim.submit(
            "a", function=b"g", unique=b"u")

    def test_key_released_when_the_job_ends(self) -> None:
        sim = Sim()
        handle = sim.submit("a", unique=b"u")
        sim.send("w", T.CAN_DO, b"f")
        sim.grab("w")
        sim.send("w", T.WORK_COMPLETE, handle, b"")
        assert sim.submit("a", unique=b"u") != handle

    def test_existing_job_keeps_its_priority_and_data(self) -> None:
        sim = Sim()
        handle = sim.submit("a", unique=b"u", data=b"first", kind=T.SUBMIT_JOB_LOW)
        sim.submit("b", unique=b"u", data=b"second", kind=T.SUBMIT_JOB_HIGH)
        job = sim.server.jobs[handle]
        assert (job.priority, job.data) == (Priority.LOW, b"first")

    def test_background_joining_foreground_survives_client_deviation(self) -> None:
        # DEVIATION "A background submit joining a foreground job": stored, and kept
        # when the foreground client leaves.
        sim = Sim()
        handle = sim.submit("a", unique=b"u")
        sim.submit("b", unique=b"u", kind=T.SUBMIT_JOB_BG)
        assert sim.server.jobs[handle].persisted
        sim.hangup("a")
        sim.send("w", T.CAN_DO, b"f")
        assert sim.grab("w").args[0] == handle

    def test_foreground_leaving_joined_background_job_keeps_it_deviation(self) -> None:
        # DEVIATION "A foreground client leaving a background job it joined".
        sim = Sim()
        handle = sim.submit("b", unique=b"u", kind=T.SUBMIT_JOB_BG)
        assert sim.submit("a", unique=b"u") == handle
        sim.hangup("a")
        assert not sim.server.jobs[handle].ignore
        sim.send("w", T.CAN_DO, b"f")
        assert sim.grab("w").args[0] == handle

    def test_submit_onto_abandoned_job_revives_it_deviation(self) -> None:
        # DEVIATION "Submitting onto an abandoned or cancelled job".
        sim = Sim()
        handle = sim.submit("a", unique=b"u")
        sim.hangup("a")
        assert sim.submit("b", unique=b"u") == handle
        sim.send("w", T.CAN_DO, b"f")
        assert sim.grab("w").args[0] == handle
        sim.send("w", T.WORK_COMPLETE, handle, b"ok")
        assert sim.take("b") == [res(T.WORK_COMPLETE, handle, b"ok")]


class TestDispatch:
    def test_priority_order_within_a_function(self) -> None:
        sim = Sim()
        low = sim.submit("c", data=b"l", kind=T.SUBMIT_JOB_LOW)
        normal = sim.submit("c", data=b"n")
        high = sim.submit("c", data=b"h", kind=T.SUBMIT_JOB_HIGH)
        sim.send("w", T.CAN_DO, b"f")
        assert [sim.grab("w").args[0] for _ in range(3)] == [high, normal, low]

    def test_fifo_within_a_priority(self) -> None:
        sim = Sim()
        handles = [sim.submit("c", data=bytes([i])) for i in range(5)]
        sim.send("w", T.CAN_DO, b"f")
        assert [sim.grab("w").args[0] for _ in range(5)] == handles

    def test_newest_registration_first_priority_is_per_function(self) -> None:
        # gearmand 1.1.20: a NORMAL job of the most recently registered function wins
        # over a HIGH job of an earlier one.
        sim = Sim()
        sim.submit("c", function=b"old", kind=T.SUBMIT_JOB_HIGH)
        new = sim.submit("c", function=b"new")
        sim.send("w", T.CAN_DO, b"old")
        sim.send("w", T.CAN_DO, b"new")
        assert sim.grab("w").args[0] == new

    def test_round_robin_rotates_functions(self) -> None:
        sim = Sim(round_robin=True)
        for name in (b"a", b"b"):
            for i in range(2):
                sim.submit("c", function=name, data=b"%d" % i)
        sim.send("w", T.CAN_DO, b"a")
        sim.send("w", T.CAN_DO, b"b")
        assert [sim.grab("w").args[1] for _ in range(4)] == [b"b", b"a", b"b", b"a"]

    def test_without_round_robin_one_function_is_drained_first(self) -> None:
        sim = Sim()
        for name in (b"a", b"b"):
            for _ in range(2):
                sim.submit("c", function=name)
        sim.send("w", T.CAN_DO, b"a")
        sim.send("w", T.CAN_DO, b"b")
        assert [sim.grab("w").args[1] for _ in range(4)] == [b"b", b"b", b"a", b"a"]

    @pytest.mark.parametrize(("grab", "assign"), [
        (T.GRAB_JOB, T.JOB_ASSIGN), (T.GRAB_JOB_UNIQ, T.JOB_ASSIGN_UNIQ),
        (T.GRAB_JOB_ALL, T.JOB_ASSIGN_UNIQ)])
    def test_assignment_packet_per_grab(self, grab: PacketType, assign: PacketType) -> None:
        sim = Sim()
        handle = sim.submit("c", unique=b"u", data=b"x")
        sim.send("w", T.CAN_DO, b"f")
        reply = sim.grab("w", grab)
        assert reply.type == assign
        assert reply.args == ((handle, b"f", b"x") if assign == T.JOB_ASSIGN
                              else (handle, b"f", b"u", b"x"))

    def test_reduce_job_to_grab_job_all(self) -> None:
        sim = Sim()
        sim.send("c", T.SUBMIT_REDUCE_JOB, b"f", b"u", b"r", b"", b"x")
        [created] = sim.take("c")
        sim.send("w", T.CAN_DO, b"f")
        assert sim.grab("w", T.GRAB_JOB_ALL) == res(T.JOB_ASSIGN_ALL, created.args[0], b"f",
                                                    b"u", b"r", b"x")

    def test_reduce_background_is_stored(self) -> None:
        sim = Sim()
        sim.send("c", T.SUBMIT_REDUCE_JOB_BACKGROUND, b"f", b"u", b"r", b"", b"x")
        [created] = sim.take("c")
        assert sim.server.jobs[created.args[0]].persisted

    def test_reduce_checks_reducer_and_unique_deviation(self) -> None:
        # DEVIATION "Reduce jobs check the reducer, not the unique": we check both.
        sim = Sim()
        sim.send("c", T.SUBMIT_REDUCE_JOB, b"f", b"u", b"r" * 65, b"", b"x")
        sim.send("c", T.SUBMIT_REDUCE_JOB, b"f", b"u" * 65, b"r", b"", b"x")
        assert sim.take("c") == [error(b"ARGUMENT_TOO_LARGE", b"Unique value too large")] * 2

    def test_a_worker_may_hold_several_jobs(self) -> None:
        sim = Sim()
        one, two = sim.submit("c"), sim.submit("c")
        sim.send("w", T.CAN_DO, b"f")
        assert [sim.grab("w").args[0] for _ in range(2)] == [one, two]
        assert sim.admin(b"status\n") == b"f\t2\t2\t1\n.\n"


class TestSleepAndWake:
    def test_sleeping_worker_gets_one_noop(self) -> None:
        sim = Sim()
        sim.send("w", T.CAN_DO, b"f")
        sim.send("w", T.PRE_SLEEP)
        sim.submit("c")
        sim.submit("c")
        assert sim.types("w") == ["NOOP"]

    def test_noop_again_after_a_grab(self) -> None:
        sim = Sim()
        sim.send("w", T.CAN_DO, b"f")
        sim.send("w", T.PRE_SLEEP)
        sim.submit("c")
        sim.take("w")
        sim.grab("w")
        sim.send("w", T.PRE_SLEEP)
        sim.submit("c")
        assert sim.types("w") == ["NOOP"]

    def test_pre_sleep_with_work_waiting_gets_noop_at_once(self) -> None:
        sim = Sim()
        sim.submit("c")
        sim.send("w", T.CAN_DO, b"f")
        sim.send("w", T.PRE_SLEEP)
        assert sim.types("w") == ["NOOP"]

    def test_awake_worker_is_not_nooped(self) -> None:
        sim = Sim()
        sim.send("w", T.CAN_DO, b"f")
        sim.submit("c")
        assert sim.types("w") == []

    def test_only_workers_of_that_function(self) -> None:
        sim = Sim()
        sim.send("w", T.CAN_DO, b"g")
        sim.send("w", T.PRE_SLEEP)
        sim.submit("c", function=b"f")
        assert sim.types("w") == []

    def test_every_sleeper_by_default(self) -> None:
        sim = Sim()
        for name in ("w1", "w2", "w3"):
            sim.send(name, T.CAN_DO, b"f")
            sim.send(name, T.PRE_SLEEP)
        sim.submit("c")
        assert [sim.types(n) for n in ("w1", "w2", "w3")] == [["NOOP"]] * 3

    def test_worker_wakeup_limits_and_rotates(self) -> None:
        sim = Sim(worker_wakeup=1)
        names = ["w1", "w2", "w3"]
        for name in names:
            sim.send(name, T.CAN_DO, b"f")
            sim.send(name, T.PRE_SLEEP)
        woken = []
        for _ in range(3):
            sim.submit("c")
            woken.append([n for n in names if sim.types(n) == ["NOOP"]])
        assert all(len(w) == 1 for w in woken)
        assert sorted(w[0] for w in woken) == names  # each worker in turn


class TestForwarding:
    def _running(self, sim: Sim, clients: tuple[str, ...] = ("c",)) -> bytes:
        handle = sim.submit(clients[0], unique=b"u")
        for name in clients[1:]:
            sim.submit(name, unique=b"u")
        sim.send("w", T.CAN_DO, b"f")
        sim.grab("w")
        return handle

    @pytest.mark.parametrize("kind", [T.WORK_DATA, T.WORK_WARNING])
    def test_data_and_warning(self, kind: PacketType) -> None:
        sim = Sim()
        handle = self._running(sim, ("a", "b"))
        sim.send("w", kind, handle, b"part\0with nul")
        assert sim.take("a") == sim.take("b") == [res(kind, handle, b"part\0with nul")]
        assert handle in sim.server.jobs  # the job goes on

    def test_status_forwarded_unchanged_and_stored(self) -> None:
        sim = Sim()
        handle = self._running(sim)
        sim.send("w", T.WORK_STATUS, handle, b"007", b"10")
        assert sim.take("c") == [res(T.WORK_STATUS, handle, b"007", b"10")]
        sim.send("c", T.GET_STATUS, handle)
        assert sim.take("c") == [res(T.STATUS_RES, handle, b"1", b"1", b"7", b"10")]

    def test_status_numbers_read_like_c_atoi(self) -> None:
        sim = Sim()
        handle = self._running(sim)
        sim.send("w", T.WORK_STATUS, handle, b"12abc", b"-1")
        sim.take("c")
        sim.send("c", T.GET_STATUS, handle)
        assert sim.take("c")[0].args[3:] == (b"12", b"4294967295")

    def test_status_denominator_too_long_closes(self) -> None:
        sim = Sim()
        handle = self._running(sim)
        sim.send("w", T.WORK_STATUS, handle, b"1", b"123456789012")
        assert sim.closed("w")

    def test_fail_forwarded_byte_for_byte(self) -> None:
        sim = Sim()
        handle = self._running(sim)
        sim.send("w", T.WORK_FAIL, handle)
        assert sim.take("c") == [res(T.WORK_FAIL, handle)]
        assert handle not in sim.server.jobs

    def test_exception_with_and_without_the_option(self) -> None:
        sim = Sim()
        handle = sim.submit("plain", unique=b"u")
        sim.send("opted", T.OPTION_REQ, b"exceptions")
        assert sim.take("opted") == [res(T.OPTION_RES, b"exceptions")]
        sim.submit("opted", unique=b"u")
        sim.send("w", T.CAN_DO, b"f")
        sim.grab("w")
        sim.send("w", T.WORK_EXCEPTION, handle, b"boom")
        assert sim.take("opted") == [res(T.WORK_EXCEPTION, handle, b"boom")]
        # DEVIATION "WORK_FAIL substituted for WORK_EXCEPTION": no stray NUL.
        assert sim.bytes("plain") == encode(T.WORK_FAIL, handle, magic=Magic.RES)
        sim.send("w", T.WORK_FAIL, handle)  # the job already ended
        assert sim.take("w") == [error(b"JOB_NOT_FOUND", b"Job given in work result not found")]

    def test_exceptions_server_option(self) -> None:
        sim = Sim(exceptions=True)
        handle = self._running(sim)
        sim.send("w", T.WORK_EXCEPTION, handle, b"boom")
        assert sim.take("c") == [res(T.WORK_EXCEPTION, handle, b"boom")]

    @pytest.mark.parametrize(("kind", "args", "text"), [
        (T.WORK_DATA, (b"x",), b"Job does not exist on server"),
        (T.WORK_WARNING, (b"x",), b"Job does not exist on server"),
        (T.WORK_STATUS, (b"1", b"2"), b"Job given in work result not found"),
        (T.WORK_COMPLETE, (b"x",), b"Job given in work result not found"),
        (T.WORK_FAIL, (), b"Job given in work result not found"),
        (T.WORK_EXCEPTION, (b"x",), b"An exception was received for a job that does not exist"),
    ])
    def test_unknown_or_foreign_job(self, kind: PacketType, args: tuple[bytes, ...],
                                    text: bytes) -> None:
        sim = Sim()
        handle = self._running(sim)
        for name, target in (("w", b"H:test:999"), ("other", handle)):
            sim.send(name, kind, target, *args)
            assert sim.take(name) == [error(b"JOB_NOT_FOUND", text)]

    def test_work_fail_handle_too_long(self) -> None:
        sim = Sim()
        sim.send("w", T.WORK_FAIL, b"H" * 64)
        assert sim.take("w") == [error(
            b"ARGUMENT_TOO_LARGE",
            b"Error occurred due to GEARMAND_JOB_HANDLE_SIZE being too small from snprintf")]

    def test_background_job_results_go_nowhere(self) -> None:
        sim = Sim()
        handle = sim.submit("c", kind=T.SUBMIT_JOB_BG)
        sim.send("w", T.CAN_DO, b"f")
        sim.grab("w")
        sim.send("w", T.WORK_STATUS, handle, b"1", b"2")
        sim.send("w", T.WORK_COMPLETE, handle, b"r")
        assert sim.take("c") == [] and sim.take("w") == []
        assert sim.server.jobs == {}


class TestStatus:
    def test_unknown_handle(self) -> None:
        sim = Sim()
        sim.send("c", T.GET_STATUS, b"H:nope:1")
        assert sim.take("c") == [res(T.STATUS_RES, b"H:nope:1", b"0", b"0", b"0", b"0")]

    def test_queued_then_running_then_forgotten(self) -> None:
        sim = Sim()
        handle = sim.submit("c", kind=T.SUBMIT_JOB_BG)
        sim.send("x", T.GET_STATUS, handle)
        assert sim.take("x")[0].args == (handle, b"1", b"0", b"0", b"0")
        sim.send("w", T.CAN_DO, b"f")
        sim.grab("w")
        sim.send("x", T.GET_STATUS, handle)
        assert sim.take("x")[0].args == (handle, b"1", b"1", b"0", b"0")
        sim.send("w", T.WORK_COMPLETE, handle, b"")
        sim.send("x", T.GET_STATUS, handle)
        assert sim.take("x")[0].args == (handle, b"0", b"0", b"0", b"0")

    def test_handle_of_64_bytes_closes(self) -> None:
        sim = Sim()
        sim.send("c", T.GET_STATUS, b"H" * 64)
        assert sim.closed("c")

    def test_status_unique(self) -> None:
        sim = Sim()
        handle = sim.submit("c", unique=b"u1")
        sim.send("x", T.GET_STATUS_UNIQUE, b"u1")
        sim.send("x", T.GET_STATUS_UNIQUE, b"nouniq")
        assert sim.take("x") == [
            res(T.STATUS_RES_UNIQUE, b"u1", b"1", b"0", b"0", b"0", b"1"),
            res(T.STATUS_RES_UNIQUE, b"nouniq", b"0", b"0", b"0", b"0", b"0")]
        assert handle in sim.server.jobs

    def test_status_unique_across_functions_and_after_end(self) -> None:
        sim = Sim()
        sim.submit("c", function=b"f", unique=b"u", kind=T.SUBMIT_JOB_BG)
        second = sim.submit("c", function=b"g", unique=b"u", kind=T.SUBMIT_JOB_BG)
        sim.send("w", T.CAN_DO, b"g")
        sim.grab("w")
        sim.send("w", T.WORK_COMPLETE, second, b"")
        sim.send("x", T.GET_STATUS_UNIQUE, b"u")
        assert sim.take("x")[0].args[1] == b"1"  # f's job still answers for "u"

    def test_empty_unique_never_matches(self) -> None:
        sim = Sim()
        sim.submit("c", unique=b"")
        sim.send("x", T.GET_STATUS_UNIQUE, b"")
        assert sim.take("x")[0].args[1] == b"0"


class TestLostWorkers:
    def _held(self, sim: Sim, **submit: bytes) -> bytes:
        handle = sim.submit("c", **submit)
        sim.send("w", T.CAN_DO, b"f")
        sim.grab("w")
        return handle

    @pytest.mark.parametrize("how", ["disconnect", "cant_do", "reset_abilities"])
    def test_running_job_goes_back_to_the_queue(self, how: str) -> None:
        sim = Sim()
        handle = self._held(sim)
        sim.send("w", T.WORK_STATUS, handle, b"1", b"2")
        sim.send("w2", T.CAN_DO, b"f")
        sim.send("w2", T.PRE_SLEEP)
        if how == "disconnect":
            sim.hangup("w")
        elif how == "cant_do":
            sim.send("w", T.CANT_DO, b"f")
        else:
            sim.send("w", T.RESET_ABILITIES)
        assert sim.types("w2") == ["NOOP"]
        assert sim.types("c") == ["WORK_STATUS"]  # the client is not told of the requeue
        assert sim.grab("w2").args[0] == handle
        sim.send("x", T.GET_STATUS, handle)
        assert sim.take("x")[0].args[3:] == (b"0", b"0")  # status reset
        assert sim.server.jobs[handle].retries == 1
        if how != "disconnect":
            sim.send("w", T.WORK_COMPLETE, handle, b"late")
            assert sim.types("w") == ["ERROR"]

    def test_cant_do_of_another_function_keeps_the_job(self) -> None:
        sim = Sim()
        handle = self._held(sim)
        sim.send("w", T.CANT_DO, b"g")
        assert sim.server.jobs[handle].worker is not None

    def test_requeued_job_goes_to_the_tail(self) -> None:
        sim = Sim()
        first = self._held(sim)
        second = sim.submit("c")
        sim.hangup("w")
        sim.send("w2", T.CAN_DO, b"f")
        assert [sim.grab("w2").args[0] for _ in range(2)] == [second, first]

    def test_job_retries_drop_with_work_fail(self) -> None:
        sim = Sim(job_retries=2)
        handle = self._held(sim)
        sim.hangup("w")
        sim.send("w", T.CAN_DO, b"f")
        sim.grab("w")
        assert sim.types("c") == []
        sim.hangup("w")
        assert sim.take("c") == [res(T.WORK_FAIL, handle)]
        assert handle not in sim.server.jobs

    def test_job_retries_one_means_no_retry(self) -> None:
        sim = Sim(job_retries=1)
        handle = self._held(sim, kind=T.SUBMIT_JOB_BG)
        sim.hangup("w")
        assert handle not in sim.server.jobs

    def test_duplicate_can_do_counts_twice(self) -> None:
        sim = Sim()
        sim.send("w", T.CAN_DO, b"f")
        sim.send("w", T.CAN_DO, b"f")
        assert sim.admin(b"status\n") == b"f\t0\t0\t2\n.\n"
        sim.send("w", T.CANT_DO, b"f")
        assert sim.admin(b"status\n") == b"f\t0\t0\t0\n.\n"


class TestCanDoTimeout:
    def _held(self, sim: Sim, timeout: bytes) -> bytes:
        handle = sim.submit("c")
        sim.send("w", T.CAN_DO_TIMEOUT, b"f", timeout)
        sim.grab("w")
        return handle

    def test_requeued_after_the_timeout(self) -> None:
        sim = Sim()
        handle = self._held(sim, b"2000")
        sim.tick(1.9)
        assert sim.server.jobs[handle].worker is not None
        sim.tick(0.2)
        assert sim.server.jobs[handle].worker is None
        assert sim.types("c") == []  # requeued, not failed (PROTOCOL says failed)
        sim.send("w", T.WORK_COMPLETE, handle, b"")
        assert sim.types("w") == ["ERROR"]

    def test_below_a_second_is_a_second(self) -> None:
        sim = Sim()
        handle = self._held(sim, b"5")
        sim.tick(0.5)
        assert sim.server.jobs[handle].worker is not None
        sim.tick(0.6)
        assert sim.server.jobs[handle].worker is None

    @pytest.mark.parametrize("timeout", [b"0", b"-5", b"abc"])
    def test_no_timeout(self, timeout: bytes) -> None:
        sim = Sim()
        handle = self._held(sim, timeout)
        sim.tick(10_000)
        assert sim.server.jobs[handle].worker is not None

    def test_completed_job_leaves_no_timer(self) -> None:
        sim = Sim()
        handle = self._held(sim, b"1000")
        sim.send("w", T.WORK_COMPLETE, handle, b"")
        assert sim.server.next_deadline() is None

    def test_retries_apply(self) -> None:
        sim = Sim(job_retries=1)
        handle = self._held(sim, b"1000")
        sim.tick(2)
        assert sim.take("c") == [res(T.WORK_FAIL, handle)]

    @pytest.mark.parametrize("timeout", [b"1" * 21, b"99999999999999999999"])
    def test_bad_number_closes(self, timeout: bytes) -> None:
        sim = Sim()
        sim.send("w", T.CAN_DO_TIMEOUT, b"f", timeout)
        assert sim.closed("w")


class TestClientDisconnect:
    def test_queued_foreground_job_is_dropped_at_grab(self) -> None:
        sim = Sim()
        handle = sim.submit("c")
        sim.hangup("c")
        assert sim.admin(b"show jobs\n") == handle + b"\t0\t1\t0\n.\n"
        sim.send("w", T.CAN_DO, b"f")
        assert sim.grab("w").type == T.NO_JOB
        assert sim.server.jobs == {}

    def test_running_job_finishes_unheard(self) -> None:
        sim = Sim()
        handle = sim.submit("c")
        sim.send("w", T.CAN_DO, b"f")
        sim.grab("w")
        sim.hangup("c")
        sim.send("w", T.WORK_COMPLETE, handle, b"r")
        assert sim.take("w") == []
        assert sim.server.jobs == {}

    def test_background_jobs_stay(self) -> None:
        sim = Sim()
        handle = sim.submit("c", kind=T.SUBMIT_JOB_BG)
        sim.hangup("c")
        sim.send("w", T.CAN_DO, b"f")
        assert sim.grab("w").args[0] == handle


class TestOptionsAndEcho:
    def test_option_case_insensitive_echoes_bytes(self) -> None:
        sim = Sim()
        sim.send("c", T.OPTION_REQ, b"EXCEPTIONS")
        assert sim.take("c") == [res(T.OPTION_RES, b"EXCEPTIONS")]

    @pytest.mark.parametrize("option", [b"bogus", b"exceptions" + b"x" * 60, b""])
    def test_unknown_option(self, option: bytes) -> None:
        sim = Sim()
        sim.send("c", T.OPTION_REQ, option)
        assert sim.take("c") == [error(b"UNKNOWN_OPTION",
                                       b"Server does not recognize given option")]

    def test_echo(self) -> None:
        sim = Sim()
        sim.send("c", T.ECHO_REQ, b"")
        sim.send("c", T.ECHO_REQ, b"a\0b")
        assert sim.take("c") == [res(T.ECHO_RES, b""), res(T.ECHO_RES, b"a\0b")]

    def test_client_id_in_workers(self) -> None:
        sim = Sim()
        sim.send("w", T.SET_CLIENT_ID, b"my worker")
        sim.send("w", T.CAN_DO, b"f")
        sim.send("w", T.CAN_DO, b"g")
        rows = sim.admin(b"workers\n").split(b"\n")
        assert rows[0].endswith(b" 127.0.0.1 my worker : g f")

    def test_client_id_truncated_to_127(self) -> None:
        sim = Sim()
        sim.send("w", T.SET_CLIENT_ID, b"x" * 200)
        assert sim.server.connections[sim.id("w")].client_id == b"x" * 127


class TestEpoch:
    def test_future_job_waits_for_its_time(self) -> None:
        sim = Sim()
        when = int(sim.now) + 60
        sim.send("c", T.SUBMIT_JOB_EPOCH, b"f", b"", b"%d" % when, b"later")
        [created] = sim.take("c")
        sim.send("w", T.CAN_DO, b"f")
        assert sim.grab("w").type == T.NO_JOB
        sim.send("w", T.PRE_SLEEP)
        assert sim.types("w") == []
        assert sim.admin(b"prioritystatus\n") == b"f\t0\t1\t0\t1\n.\n"
        sim.tick(60)
        assert sim.grab("w").args[0] == created.args[0]

    @pytest.mark.parametrize("epoch", [b"0", b"100", b"notanumber", b"-5"])
    def test_past_or_unparsable_time_runs_now(self, epoch: bytes) -> None:
        sim = Sim()
        sim.send("c", T.SUBMIT_JOB_EPOCH, b"f", b"", epoch, b"x")
        sim.send("w", T.CAN_DO, b"f")
        assert sim.grab("w").type == T.JOB_ASSIGN_UNIQ

    def test_overflow_closes(self) -> None:
        sim = Sim()
        sim.send("c", T.SUBMIT_JOB_EPOCH, b"f", b"", b"9" * 30, b"x")
        assert sim.closed("c")

    def test_epoch_job_is_background(self) -> None:
        sim = Sim()
        sim.send("c", T.SUBMIT_JOB_EPOCH, b"f", b"", b"1", b"x")
        [created] = sim.take("c")
        job = sim.server.jobs[created.args[0]]
        assert (job.background, job.persisted, job.clients) == (True, True, [])

    def test_future_epoch_does_not_block_lower_priority_deviation(self) -> None:
        # DEVIATION "Future epoch jobs block lower priorities".
        sim = Sim()
        sim.send("c", T.SUBMIT_JOB_EPOCH, b"f", b"", b"%d" % (sim.now + 60), b"x")
        sim.take("c")
        low = sim.submit("c", kind=T.SUBMIT_JOB_LOW_BG)
        sim.send("w", T.CAN_DO, b"f")
        assert sim.grab("w").args[0] == low


class TestMaxQueue:
    def test_queue_full(self) -> None:
        sim = Sim()
        assert sim.admin(b"maxqueue f 2\n") == b"OK\r\n"  # unknown function: no change
        sim.send("w", T.CAN_DO, b"f")
        assert sim.admin(b"maxqueue f 2\n") == b"OK\r\n"
        sim.submit("c")
        sim.submit("c", unique=b"u")
        sim.send("c", T.SUBMIT_JOB, b"f", b"", b"")
        assert sim.take("c") == [error(b"QUEUE_ERROR", b"Job queue is full")]
        sim.send("c", T.SUBMIT_JOB, b"f", b"u", b"")  # coalescing is not limited
        assert sim.types("c") == ["JOB_CREATED"]

    def test_running_jobs_count(self) -> None:
        sim = Sim()
        sim.send("w", T.CAN_DO, b"f")
        sim.admin(b"maxqueue f 1\n")
        sim.submit("c")
        sim.grab("w")
        sim.send("c", T.SUBMIT_JOB, b"f", b"", b"")
        assert sim.types("c") == ["ERROR"]

    def test_per_priority_forms(self) -> None:
        sim = Sim()
        sim.send("w", T.CAN_DO, b"f")
        function = sim.server.functions[b"f"]
        for line, limits in [(b"maxqueue f 3", [3, 3, 3]), (b"maxqueue f 1 2", [1, 2, 0]),
                             (b"maxqueue f 1 2 3", [1, 2, 3]), (b"maxqueue f -4", [0, 0, 0]),
                             (b"maxqueue f 5", [5, 5, 5]), (b"maxqueue f", [0, 0, 0])]:
            assert sim.admin(line + b"\n") == b"OK\r\n"
            assert function.max_queue == limits, line


class MemoryQueue(BatchingQueue):
    """A durable queue in memory whose writes can be made to fail."""

    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[tuple[bytes, bytes], StoredJob] = {}
        self.fail = False
        self.transactions = 0

    def _write(self, ops: list) -> None:  # type: ignore[type-arg]
        if self.fail:
            raise QueueError("disk on fire")
        self.transactions += 1
        for kind, arg in ops:
            if kind == "add":
                self.rows[(arg.unique, arg.function)] = arg
            else:
                self.rows.pop(arg, None)

    def _read(self) -> list[StoredJob]:
        return list(self.rows.values())


def durable_sim(**options: object) -> tuple[Sim, MemoryQueue]:
    sim = Sim(**options)
    queue = MemoryQueue()
    sim.server = JobServer(sim.server.options, queue=queue, clock=lambda: sim.now)
    return sim, queue


class TestQueueInterface:
    def test_background_jobs_stored_until_done(self) -> None:
        sim, queue = durable_sim()
        handle = sim.submit("c", unique=b"u", kind=T.SUBMIT_JOB_HIGH_BG)
        sim.submit("c")  # foreground: not stored
        assert list(queue.rows.values()) == [StoredJob(b"u", b"f", b"d", 0, 0)]
        sim.send("w", T.CAN_DO, b"f")
        sim.grab("w")
        sim.send("w", T.WORK_FAIL, handle)
        sim.server.commit()
        assert queue.rows == {}

    def test_group_commit_one_transaction_per_tick(self) -> None:
        sim, queue = durable_sim()
        for i in range(3):
            sim.raw(f"c{i}", b"".join(encode(T.SUBMIT_JOB_BG, b"f", b"u%d-%d" % (i, n), b"")
                                        for n in range(10)))
        ready = sim.server.drain()
        assert queue.transactions == 1 and len(queue.rows) == 30
        assert sum(data.count(b"\0RES\0\0\0\x08") for _, data, _ in ready) == 30

    def test_nothing_is_grabbable_or_acknowledged_before_the_commit(self) -> None:
        sim, queue = durable_sim()
        sim.send("w", T.CAN_DO, b"f")
        sim.send("w", T.PRE_SLEEP)
        sim.raw("c", encode(T.SUBMIT_JOB_BG, b"f", b"u", b"x") + encode(T.ECHO_REQ, b"after"))
        conn = sim.server.connections[sim.id("c")]
        assert queue.rows == {} and sim.server.functions[b"f"].queued == 0
        assert conn.out  # the replies wait in order: JOB_CREATED then ECHO_RES
        assert [p.type for p in sim.take("c")] == [T.JOB_CREATED, T.ECHO_RES]
        assert sim.types("w") == ["NOOP"]
        assert len(queue.rows) == 1

    def test_failed_write_acknowledges_nothing(self) -> None:
        sim, queue = durable_sim()
        queue.fail = True
        sim.raw("c", encode(T.SUBMIT_JOB_BG, b"f", b"u", b"x") + encode(T.ECHO_REQ, b"next"))
        assert sim.take("c") == [error(b"QUEUE_ERROR", b"QUEUE_ERROR"), res(T.ECHO_RES, b"next")]
        assert sim.server.jobs == {} and sim.server.store.uniques == {}
        sim.send("w", T.CAN_DO, b"f")
        assert sim.grab("w").type == T.NO_JOB
        queue.fail = False  # the store is back: the next submit works
        sim.submit("c", unique=b"u", kind=T.SUBMIT_JOB_BG)
        assert list(queue.rows) == [(b"u", b"f")]

    def test_failed_write_refuses_a_foreground_client_that_joined(self) -> None:
        sim, queue = durable_sim()
        queue.fail = True
        sim.raw("a", encode(T.SUBMIT_JOB_BG, b"f", b"u", b"x"))
        sim.raw("b", encode(T.SUBMIT_JOB, b"f", b"u", b"x"))
        sim.server.commit()
        assert sim.take("a") == sim.take("b") == [error(b"QUEUE_ERROR", b"QUEUE_ERROR")]
        assert sim.server.jobs == {}

    def test_failed_delete_is_retried(self) -> None:
        sim, queue = durable_sim()
        handle = sim.submit("c", unique=b"u", kind=T.SUBMIT_JOB_BG)
        sim.send("w", T.CAN_DO, b"f")
        sim.grab("w")
        queue.fail = True
        sim.send("w", T.WORK_COMPLETE, handle, b"")
        sim.server.commit()
        assert (b"u", b"f") in queue.rows
        queue.fail = False
        sim.server.commit()
        assert queue.rows == {}

    def test_empty_uniques_get_their_own_rows(self) -> None:
        # DEVIATION "Background jobs without a unique in a persistent queue".
        sim, queue = durable_sim()
        one = sim.submit("c", unique=b"", data=b"1", kind=T.SUBMIT_JOB_BG)
        sim.submit("c", unique=b"", data=b"2", kind=T.SUBMIT_JOB_BG)
        assert len(queue.rows) == 2
        assert all(u.startswith(EMPTY_UNIQUE_MARKER) for u, _ in queue.rows)
        restarted = JobServer(sim.server.options, queue=queue)
        assert restarted.replay(queue.replay()) == 2
        assert {j.unique for j in restarted.jobs.values()} == {b""}
        sim.send("w", T.CAN_DO, b"f")
        assert sim.grab("w").args[0] == one
        sim.send("w", T.WORK_COMPLETE, one, b"")
        sim.server.commit()
        assert len(queue.rows) == 1

    def test_store_failure_is_queue_error_and_no_job(self) -> None:
        class Refusing(BuiltinQueue):
            def add(self, job: StoredJob) -> None:
                raise QueueError("no epoch jobs here")

        sim = Sim()
        sim.server = JobServer(sim.server.options, queue=Refusing(), clock=lambda: sim.now)
        sim.send("c", T.SUBMIT_JOB_BG, b"f", b"u", b"")
        assert sim.take("c") == [error(b"QUEUE_ERROR", b"QUEUE_ERROR")]
        assert sim.server.jobs == {} and sim.server.store.uniques == {}

    def test_replay_coalesces_and_keeps_priority(self) -> None:
        sim = Sim()
        count = sim.server.replay([StoredJob(b"u", b"f", b"a", 2), StoredJob(b"u", b"f", b"b", 2),
                                   StoredJob(b"v", b"f", b"c", 0)])
        assert count == 2
        sim.send("w", T.CAN_DO, b"f")
        assert [sim.grab("w").args[3] for _ in range(2)] == [b"c", b"a"]


class TestAdmin:
    def test_status_lists_functions_until_dropped(self) -> None:
        sim = Sim()
        sim.send("w", T.CAN_DO, b"f")
        sim.submit("c", function=b"g", kind=T.SUBMIT_JOB_BG)
        sim.hangup("w")
        assert sim.admin(b"STATUS\r\n") == b"f\t0\t0\t0\ng\t1\t0\t0\n.\n"

    def test_workers(self) -> None:
        sim = Sim()
        sim.send("w", T.CAN_DO, b"f")
        reply = sim.admin(b"workers\n")
        rows = reply.split(b"\n")
        assert rows[0] == b"%d 127.0.0.1 - : f" % sim.id("w")
        assert rows[1] == b"%d 127.0.0.1 - :" % sim.id("admin")
        assert reply.endswith(b"\n.\n")

    def test_show_jobs_and_unique_jobs(self) -> None:
        sim = Sim()
        one = sim.submit("c", unique=b"u1", kind=T.SUBMIT_JOB_BG)
        two = sim.submit("c")
        assert sim.admin(b"show jobs\n") == one + b"\t0\t0\t1\n" + two + b"\t0\t0\t0\n.\n"
        assert sim.admin(b"show unique jobs\n") == b"u1\n\n.\n"
        assert sim.admin(b"show foo\n") == b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
        assert sim.admin(b"show\n") == b"ERR UNKNOWN_COMMAND Unknown+server+commandshow\r\n"

    def test_prioritystatus(self) -> None:
        sim = Sim()
        for kind in (T.SUBMIT_JOB_HIGH_BG, T.SUBMIT_JOB_LOW_BG, T.SUBMIT_JOB_LOW_BG):
            sim.submit("c", kind=kind)
        sim.send("w", T.CAN_DO, b"f")
        assert sim.admin(b"prioritystatus\n") == b"f\t1\t0\t2\t1\n.\n"

    def test_cancel_job(self) -> None:
        sim = Sim()
        handle = sim.submit("c")
        assert sim.admin(b"cancel job " + handle + b"\n") == b"OK\r\n"
        assert sim.take("c") == [res(T.WORK_FAIL, handle)]
        assert sim.admin(b"cancel job H:none:1\n") == b"ERR UNKNOWN_JOB\r\n"
        assert sim.admin(b"cancel foo bar\n") == b"ERR UNKNOWN_ERROR\r\n"
        assert sim.admin(b"cancel job\n") == b"ERR UNKNOWN_COMMAND Unknown+server+commandcancel\r\n"
        sim.send("w", T.CAN_DO, b"f")
        assert sim.grab("w").type == T.NO_JOB  # dropped when reached

    def test_cancel_running_job_stays_silent_deviation(self) -> None:
        # DEVIATION "Cancelled jobs stay silent".
        sim = Sim()
        handle = sim.submit("c")
        sim.send("w", T.CAN_DO, b"f")
        sim.grab("w")
        sim.admin(b"cancel job " + handle + b"\n")
        assert sim.types("c") == ["WORK_FAIL"]
        sim.send("w", T.WORK_COMPLETE, handle, b"late")
        assert sim.take("c") == [] and sim.take("w") == []

    def test_create_and_drop_function(self) -> None:
        sim = Sim()
        assert sim.admin(b"create function fn\n") == b"OK\r\n"
        assert sim.admin(b"status\n") == b"fn\t0\t0\t0\n.\n"  # DEVIATION: whole name on bare \n
        assert sim.admin(b"create function\n") == (
            b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+"
            b"create\r\n")
        assert sim.admin(b"drop function FN\r\n") == b"OK\r\n"  # case-insensitive
        assert sim.admin(b"drop function fn\n") == b"ERR function not found\r\n"
        sim.send("w", T.CAN_DO, b"busy")
        assert sim.admin(b"drop function busy\n") == (
            b"ERR there are still connected workers or executing clients\r\n")

    def test_drop_function_with_queued_jobs_refused_deviation(self) -> None:
        # DEVIATION "Dropping a function with queued jobs".
        sim = Sim()
        sim.submit("c", kind=T.SUBMIT_JOB_BG)
        assert sim.admin(b"drop function f\n") == (
            b"ERR there are still connected workers or executing clients\r\n")

    def test_single_value_commands(self) -> None:
        sim = Sim(verbose="INFO", pid=4242, version="9.9")
        assert sim.admin(b"getpid\n") == b"OK 4242\n"
        assert sim.admin(b"verbose\n") == b"OK INFO\n"
        assert sim.admin(b"version\n") == b"OK 9.9\n"

    def test_unknown_commands(self) -> None:
        sim = Sim()
        assert sim.admin(b"jobs\n") == b"ERR UNKNOWN_COMMAND Unknown+server+commandjobs\r\n"
        assert sim.admin(b"\n") == b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n"
        assert sim.admin(b"maxqueue\n") == (
            b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+"
            b"maxqueue\r\n")

    def test_shutdown_only_when_allowed(self) -> None:
        sim = Sim()
        assert sim.admin(b"shutdown\n") == b"ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n"
        assert sim.server.shutdown_requested is None
        allowed = Sim(admin_shutdown=True)
        assert allowed.admin(b"shutdown graceful\n") == b"OK\r\n"
        assert allowed.server.shutdown_requested == "graceful"

    def test_text_and_binary_on_one_connection(self) -> None:
        sim = Sim()
        sim.raw("c", b"version\n" + encode(T.ECHO_REQ, b"x") + b"getpid\n")
        data = sim.bytes("c")
        assert data.startswith(b"OK ")
        assert encode(T.ECHO_RES, b"x", magic=Magic.RES) in data


class TestTimerHousekeeping:
    def test_cancelled_timers_do_not_pile_up(self) -> None:
        sim = Sim()
        sim.send("w", T.CAN_DO_TIMEOUT, b"f", b"60000")
        for _ in range(5000):
            handle = sim.submit("c", kind=T.SUBMIT_JOB_BG)
            sim.grab("w")
            sim.send("w", T.WORK_COMPLETE, handle, b"")
        assert len(sim.server.timers.heap) < 2100
        assert sim.server.next_deadline() is None


def test_admin_prints_function_names_up_to_a_nul() -> None:
    # gearmand prints names with printf, so a CAN_DO name holding a NUL stops there.
    sim = Sim()
    sim.send("w", T.CAN_DO, b"fn\0junk")
    assert sim.admin(b"status\n") == b"fn\t0\t0\t1\n.\n"
    assert sim.admin(b"workers\n").split(b"\n")[0].endswith(b" : fn")


def test_eleven_character_denominator_is_read_from_ten() -> None:
    # gearmand copies the denominator into an 11-byte buffer (10 characters + NUL).
    sim = Sim()
    handle = sim.submit("c")
    sim.send("w", T.CAN_DO, b"f")
    sim.grab("w")
    sim.send("w", T.WORK_STATUS, handle, b"1", b"12345678901")
    sim.send("x", T.GET_STATUS, handle)
    assert sim.take("x")[0].args[4] == b"1234567890"
