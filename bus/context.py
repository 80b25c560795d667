"""What a handler receives beside its typed event: the envelope and the delivery facts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bus.contracts import Contract
from bus.envelope import Envelope
from bus.publisher import Published, event_id

if TYPE_CHECKING:
    from bus.publisher import Publisher


@dataclass(slots=True)
class EventContext:
    """Delivery context of one event.

    ``delivery`` counts from 1: a value above 1 means this event was handled before and failed
    (or its consumer died), so side effects may already have happened once.
    """

    envelope: Envelope
    stream: str
    entry_id: str
    group: str
    consumer: str
    delivery: int
    _publisher: Publisher | None = None

    @property
    def event_id(self) -> str:
        return self.envelope.id

    @property
    def correlation_id(self) -> str:
        """The id that ties a chain of events across departments (the first event's id)."""
        return self.envelope.correlationid or self.envelope.id

    async def publish(self, event: Contract, *, key: object = None, **attributes: Any) -> Published:
        """Publish an event caused by this one (services are producers too).

        Its id is derived from this event's id, the new type and ``key`` (give one when a single
        event causes several of the same type, e.g. the grant number when a death suspends
        each of a person's grants), so a redelivery of this event republishes nothing;
        correlation and causation ids are set for tracing.
        """
        if self._publisher is None:
            raise RuntimeError("this service has no publisher: give Service(..., source=...)")
        parts: tuple[object, ...] = (self.envelope.id, event.__contract__.event_type)
        attributes.setdefault(
            "id", event_id(self._publisher.source, *parts, *(() if key is None else (key,)))
        )
        attributes.setdefault("correlationid", self.correlation_id)
        attributes.setdefault("causationid", self.envelope.id)
        return await self._publisher.publish(event, **attributes)
