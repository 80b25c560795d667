"""Citizen profile: the single view of a person across departments, and "one user, one account".

For the city super-app (a citizen sees what the city knows about them, through their account)
and for departments that need another department's facts about a person (dinsos checks a
recipient is alive and where the household lives; bapenda the billing address...), each role
seeing only the sections it needs.

Consumes, per person (NIK):

* dukcapil: ``CitizenBorn``, ``CitizenDied``, ``CitizenMoved``, ``FamilyCardIssued`` ->
  registry status, current address, family card;
* dpmptsp: ``PermitApplied``, ``PermitIssued``, ``PermitRejected`` -> permits;
* bapenda: ``TaxpayerRegistered``, ``TaxAssessed``, ``PaymentReceived`` -> NPWPDs, assessments
  with what is paid and outstanding;
* dinsos: ``AssistanceGranted``, ``AssistanceSuspended`` -> grants and their status;
* identity: ``AccountLinked``, ``AccountUnlinked`` -> the account links and their history.

Permit and tax events about a business (scheme ``nib``) are skipped: the profile is a view of
persons, and nothing on the bus says which person stands behind an NIB.

Publishes nothing. Serves a read-only, token-protected HTTP API (:mod:`services.profile.api`)
and keeps a record of every lookup (role, time, the subject's pseudonym, outcome).

Stores (SQLite, or PostgreSQL with ``SIMPUL_PROFILE_DB``) what the sections show and no more:
not the child's birth date or pseudonym, no names, no permit site, no amount of assistance,
no payment channel, no verification evidence. Events arrive in any order across streams; the
store converges to the same state whatever the order (:mod:`services.profile.db`).
"""

from services.profile.policy import Policy, Tokens
from services.profile.ratelimit import RateLimit
from services.profile.service import PSEUDONYM_KEY_ENV, WRITES, Profile, ProfileSettings, create

__all__ = [
    "PSEUDONYM_KEY_ENV",
    "WRITES",
    "Policy",
    "Profile",
    "ProfileSettings",
    "RateLimit",
    "Tokens",
    "create",
]
