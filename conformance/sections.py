"""The numbered sections of the Gearman protocol that scenarios cite.

The numbering follows the order a reader meets the protocol: framing, the
packet table, the behaviour of each family of packets, then the admin
protocol.  Reports count coverage against it."""

#: The sections of the protocol a scenario can cite in ``sections:``.
SECTIONS = {
    "1": "Framing: the 12-byte header, NUL-separated arguments, text lines",
    "2": "The packet table: numbers, directions and arguments",
    "3.1": "Job handles",
    "3.2": "Functions",
    "3.3": "Submitting, and coalescing on the unique id",
    "3.4": "Priorities and the order jobs are handed out",
    "3.5": "Sleeping workers: PRE_SLEEP and NOOP",
    "3.6": "Forwarding WORK_* packets; the exceptions option",
    "3.7": "Status queries: GET_STATUS, GET_STATUS_UNIQUE",
    "3.8": "A worker leaving, CANT_DO, RESET_ABILITIES, job retries",
    "3.9": "CAN_DO_TIMEOUT",
    "3.10": "A client leaving",
    "3.11": "OPTION_REQ, SET_CLIENT_ID, ALL_YOURS, ECHO",
    "3.12": "Scheduled (epoch) jobs",
    "3.13": "Reduce jobs and GRAB_JOB_ALL",
    "3.14": "Queue limits (maxqueue) and QUEUE_FULL",
    "3.15": "The ERROR packets the server sends",
    "3.16": "Shutting down",
    "4": "The text (admin) protocol",
    "5": "The HTTP protocol module (gearmand -r http)",
    "6": "TLS on the Gear port (gearmand's --ssl options)",
}
