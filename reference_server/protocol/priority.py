"""Job priorities, and which submit packet asks for which priority and kind.

PROTOCOL "SUBMIT_JOB, SUBMIT_JOB_BG, ..."; the numbers are libgearman-1.0's
``gearman_job_priority_t`` (priority.h), which persistent queues also store.
"""

from __future__ import annotations

import enum

from reference_server.protocol.packets import PacketType


class Priority(enum.IntEnum):
    """libgearman-1.0/priority.h; also the value stored by persistent queues."""

    HIGH = 0
    NORMAL = 1
    LOW = 2


#: Submit packet → (priority, background).  SUBMIT_JOB_EPOCH and the reduce submits
#: are not here: they carry more arguments and always run at normal priority.
SUBMITS: dict[PacketType, tuple[Priority, bool]] = {
    PacketType.SUBMIT_JOB: (Priority.NORMAL, False),
    PacketType.SUBMIT_JOB_BG: (Priority.NORMAL, True),
    PacketType.SUBMIT_JOB_HIGH: (Priority.HIGH, False),
    PacketType.SUBMIT_JOB_HIGH_BG: (Priority.HIGH, True),
    PacketType.SUBMIT_JOB_LOW: (Priority.LOW, False),
    PacketType.SUBMIT_JOB_LOW_BG: (Priority.LOW, True),
}

#: (priority, background) → the submit packet that asks for it.
SUBMIT_TYPES: dict[tuple[Priority, bool], PacketType] = {kind: t for t, kind in SUBMITS.items()}
