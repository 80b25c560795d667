"""Audit: the legal record of the bus — every event of every stream, in a hash-chained archive.

For whom: the city's inspectorate and data-protection officer (what happened, when, sent by whom,
provably unaltered), and the departments whose new services must catch up on events already
trimmed from the streams (``simpul audit backfill``).

Consumes: every entry of the stream of every registered contract (``Service.on_every``), whatever
its type, before validation: unknown types and events that violate their contract are archived
too, as they travelled. Entries that are not wire format v1 (undecodable) or sit on the wrong
stream are dead-lettered by the bus before they reach the archive
(``simpul:{<aggregate>}:dlq:audit``).

Publishes: nothing.

Stores (``audit_log``, one row per stream entry, append-only): seq 1..n without gaps, the stream
and entry id, the envelope's attributes, the contract's classification, the data, its sha256
digest, when it was archived, and the hash chain (``prev_hash``, ``hash``). The newest
(seq, hash) is also kept in Redis (:func:`head_key`) so that removing the newest rows is
detected. ``audit_access`` records each time archived data was shown.

Does NOT store: the data of specific personal data (UU PDP art. 4(2): children's and health
data; contracts classified ``specific``, and types without a contract, whose content nobody can
vouch for). Those rows keep the metadata and the digest only, so that a copy can still be proven
authentic. Personal data of other classes is kept: the archive is the legal record, and access to
it is restricted (and logged when data is shown).
"""

from services.audit.service import Appended, Audit, Head, Report, create, head_key, parse_time

__all__ = ["Appended", "Audit", "Head", "Report", "create", "head_key", "parse_time"]
