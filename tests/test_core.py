"""The sans-IO job server, driven without sockets (fake clock, named connections).

Behaviour the conformance catalog states (conformance/scenarios) is tested
there, on the ``inproc`` target, which plays every case against this same
sans-IO core (``gearspec run --target inproc``), and against gearmand.  This
file keeps only what the catalog cannot say: exact bytes (the PROTOCOL worked
example), the sans-IO API itself (``data_to_send``, drain and commit order,
``is_closing``, connection ids, replay and the queue interface with fake
queues), timers at exact clock values and their housekeeping, bookkeeping only
visible through the API, options the catalog never starts a server with, and
the cases where the catalog accepts several answers (or checks fewer fields)
and this file pins ours.  Tests of a decision of ours where gearmand has a bug
say DEVIATION and name the entry in reference_server/DEVIATIONS.md.
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

    def test_text_line_over_8_kib_closes_before_its_newline(self) -> None:
        # The catalog's over-long line (framing/limits/admin-line-8192-closes) comes
        # with its newline; here none ever arrives, so the close cannot wait for one.
        sim = Sim()
        sim.raw("c", b"x" * 8193)
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

    def test_type_with_top_bit_closes_only_that_connection_deviation(self) -> None:
        # DEVIATION "Type numbers of 2^31 and up": unknown like 999, not a crash.
        # 2^31 and 2^32 - 1 are catalog cases; 2^31 + 7 would be SUBMIT_JOB (7) to a
        # server that dropped the top bit, so it catches a masked type number.
        sim = Sim()
        sim.raw("c", frame(b"\0REQ", 2**31 + 7, b"x\0y"))
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


class TestCoalescing:
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
    def test_reduce_background_is_stored(self) -> None:
        sim = Sim()
        sim.send("c", T.SUBMIT_REDUCE_JOB_BACKGROUND, b"f", b"u", b"r", b"", b"x")
        [created] = sim.take("c")
        assert sim.server.jobs[created.args[0]].persisted


class TestSleepAndWake:
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

    def test_status_denominator_too_long_closes(self) -> None:
        sim = Sim()
        handle = self._running(sim)
        sim.send("w", T.WORK_STATUS, handle, b"1", b"123456789012")
        assert sim.closed("w")


class TestStatus:
    def test_handle_of_64_bytes_closes(self) -> None:
        sim = Sim()
        sim.send("c", T.GET_STATUS, b"H" * 64)
        assert sim.closed("c")


class TestLostWorkers:
    def _held(self, sim: Sim, **submit: bytes) -> bytes:
        handle = sim.submit("c", **submit)
        sim.send("w", T.CAN_DO, b"f")
        sim.grab("w")
        return handle

    # CANT_DO is the catalog's (worker/lost/cant-do-requeues, status-reset-on-requeue,
    # late-result-after-requeue; admin/jobs/requeue-counts-retry); the catalog checks
    # the status reset, the retry count and the late result only for that one.
    @pytest.mark.parametrize("how", ["disconnect", "reset_abilities"])
    def test_running_job_goes_back_to_the_queue(self, how: str) -> None:
        sim = Sim()
        handle = self._held(sim)
        sim.send("w", T.WORK_STATUS, handle, b"1", b"2")
        sim.send("w2", T.CAN_DO, b"f")
        sim.send("w2", T.PRE_SLEEP)
        if how == "disconnect":
            sim.hangup("w")
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

    def test_job_retries_one_means_no_retry(self) -> None:
        sim = Sim(job_retries=1)
        handle = self._held(sim, kind=T.SUBMIT_JOB_BG)
        sim.hangup("w")
        assert handle not in sim.server.jobs


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


class TestOptions:
    def test_empty_option_is_unknown(self) -> None:
        # Unknown, prefixed and over-long names are catalog cases (client/options/...).
        sim = Sim()
        sim.send("c", T.OPTION_REQ, b"")
        assert sim.take("c") == [error(b"UNKNOWN_OPTION",
                                       b"Server does not recognize given option")]


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

    # 1000 and "soon" are catalog cases (submit/epoch/past-epoch-runs-now,
    # non-numeric-epoch-means-now); 0 and a negative time are not.
    @pytest.mark.parametrize("epoch", [b"0", b"-5"])
    def test_zero_or_negative_time_runs_now(self, epoch: bytes) -> None:
        sim = Sim()
        sim.send("c", T.SUBMIT_JOB_EPOCH, b"f", b"", epoch, b"x")
        sim.send("w", T.CAN_DO, b"f")
        assert sim.grab("w").type == T.JOB_ASSIGN_UNIQ

    def test_overflow_closes(self) -> None:
        sim = Sim()
        sim.send("c", T.SUBMIT_JOB_EPOCH, b"f", b"", b"9" * 30, b"x")
        assert sim.closed("c")


class TestMaxQueue:
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

    def test_a_unique_that_begins_like_a_generated_one_is_kept(self) -> None:
        sim, queue = durable_sim()
        mine = EMPTY_UNIQUE_MARKER + b"mine"
        sim.submit("c", unique=mine, data=b"1", kind=T.SUBMIT_JOB_BG)
        restarted = JobServer(sim.server.options, queue=queue)
        assert restarted.replay(queue.replay()) == 1
        assert [j.unique for j in restarted.jobs.values()] == [mine]

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

    def test_shutdown_only_when_allowed(self) -> None:
        sim = Sim()
        assert sim.admin(b"shutdown\n") == b"ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n"
        assert sim.server.shutdown_requested is None
        allowed = Sim(admin_shutdown=True)
        assert allowed.admin(b"shutdown graceful\n") == b"OK\r\n"
        assert allowed.server.shutdown_requested == "graceful"


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
