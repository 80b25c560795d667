"""What the licensing application (a SiCantik-like one-stop permit system) POSTs on each decision.

One request per state change of an application, as JSON or as a form (every value a string).
Field names are the application's own (Indonesian); the codes below are its code tables.

=========================  ==================================================================
field                      meaning
=========================  ==================================================================
nomor_permohonan           application number, e.g. ``PBG/2026/11/000412`` — the record key
status_permohonan          DIAJUKAN (complete, in review) | TERBIT (issued) | DITOLAK (rejected)
revisi                     bumped by the application on every correction of the record
jenis_izin                 PBG | SLF | REKLAME | IZIN_USAHA
nik_pemohon                the applicant's NIK (a person applies)
nama_pemohon               the applicant's name — not mapped: no contract needs it
nib                        the business's NIB (a business applies; required for IZIN_USAHA)
alamat_lokasi, rt, rw      the site's street line and neighbourhood units
kode_kelurahan             Kemendagri code, e.g. ``35.73.02.1008``
kode_kecamatan             Kemendagri code, e.g. ``35.73.02``
tanggal_permohonan         date the application was complete, ``DD-MM-YYYY`` (or ISO)
tanggal_keputusan          date of the decision (TERBIT, DITOLAK)
nomor_izin                 the permit's printed number (TERBIT)
masa_berlaku_sampai        last valid day (TERBIT), empty when it does not expire
retribusi                  retribution in rupiah (TERBIT), digits, ``4.750.000`` allowed
kode_alasan_penolakan      see :data:`REASONS` (DITOLAK)
catatan                    free-text note of the officer — not mapped: it may name people
waktu_proses               when the application recorded the decision, local time (WIB)
=========================  ==================================================================

The event's version is ``<status_permohonan>/<revisi>``: the decision and the application are
different facts of one application number, and a correction is a new fact.
"""

from __future__ import annotations

from typing import Final

from schemas.dpmptsp import PermitKind

APPLIED: Final = "DIAJUKAN"
ISSUED: Final = "TERBIT"
REJECTED: Final = "DITOLAK"
STATUSES: Final = (APPLIED, ISSUED, REJECTED)

KINDS: Final = {
    "PBG": PermitKind.PBG,
    "SLF": PermitKind.SLF,
    "REKLAME": PermitKind.REKLAME,
    "IZIN_USAHA": PermitKind.IZIN_USAHA,
}
REASONS: Final = {
    "BERKAS_TIDAK_LENGKAP": "incomplete-documents",
    "TIDAK_SESUAI_RDTR": "zoning-mismatch",
    "KAJIAN_TEKNIS_TIDAK_LULUS": "technical-review-failed",
    "TIDAK_MEMENUHI_SYARAT": "not-eligible",
}

FIELDS: Final = (
    "nomor_permohonan",
    "status_permohonan",
    "revisi",
    "jenis_izin",
    "nik_pemohon",
    "nama_pemohon",
    "nib",
    "alamat_lokasi",
    "rt",
    "rw",
    "kode_kelurahan",
    "kode_kecamatan",
    "tanggal_permohonan",
    "tanggal_keputusan",
    "nomor_izin",
    "masa_berlaku_sampai",
    "retribusi",
    "kode_alasan_penolakan",
    "catatan",
    "waktu_proses",
)
