"""Dead letters back to the queue (`lookalike events replay`), once what made them fail is
mended: each parked event is published again as it was, then discarded from the dead
letters (a crash in between sends it twice, which changes nothing)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lookalike.ingest.event_sources import DeadLetter, EventPublisher


@dataclass
class ReplayReport:
    replayed: int = 0
    dropped: int = 0  # unreadable ones discarded on request
    # The unreadable dead letter the replay stopped at (its payload was not a JSON object):
    # mend it at the source, or drop it.
    stopped_at: DeadLetter | None = None
    positions: list[str] = field(default_factory=list)


def readable(letter: DeadLetter) -> bool:
    """The dead letter holds an event (a JSON object), not a payload kept as it came."""
    return set(letter.event) != {"raw"}


def replay_dead_letters(
    publisher: EventPublisher, *, limit: int = 1000, drop_unreadable: bool = False
) -> ReplayReport:
    """Publish up to `limit` dead letters again, oldest first, and discard them. An
    unreadable one stops the replay there (order is kept), unless `drop_unreadable`."""
    report = ReplayReport()
    send: list[DeadLetter] = []
    done: list[DeadLetter] = []
    for letter in publisher.dead_letters(limit):
        if not readable(letter):
            if not drop_unreadable:
                report.stopped_at = letter
                break
            report.dropped += 1
        else:
            send.append(letter)
        done.append(letter)
    if send:
        report.positions = publisher.publish_many([letter.event for letter in send])
    publisher.discard_dead_letters(done)
    report.replayed = len(send)
    return report
