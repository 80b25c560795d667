"""What citizens read (Indonesian): a short title and body per event, with only what is needed.

A notice names the record (permit or payment reference), its kind, the date and, for a
payment, the amount. Never the NIK, a name, an address or a tax object (NOP): the citizen
knows who they are, and an e-mail passes through servers the city does not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from schemas.bapenda import PaymentReceived, TaxKind
from schemas.dpmptsp import PermitIssued, PermitKind, PermitRejected
from services._common import WIB
from services.notifier.projections import IssuedPermit, Payment

_MONTHS = (
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
)

PERMITS: dict[PermitKind, str] = {
    PermitKind.PBG: "Persetujuan Bangunan Gedung (PBG)",
    PermitKind.SLF: "Sertifikat Laik Fungsi (SLF)",
    PermitKind.REKLAME: "Izin Penyelenggaraan Reklame",
    PermitKind.IZIN_USAHA: "Perizinan Berusaha",
}

REJECTIONS: dict[str, str] = {
    "incomplete-documents": "dokumen tidak dilengkapi dalam batas waktu",
    "zoning-mismatch": "lokasi tidak sesuai dengan rencana tata ruang (RDTR)",
    "technical-review-failed": "tidak lulus kajian teknis",
    "not-eligible": "pemohon tidak memenuhi persyaratan",
}

TAXES: dict[TaxKind, str] = {
    TaxKind.PBB_P2: "PBB-P2",
    TaxKind.BPHTB: "BPHTB",
    TaxKind.PBJT_MAKANAN_MINUMAN: "PBJT Makanan dan/atau Minuman",
    TaxKind.PBJT_PERHOTELAN: "PBJT Jasa Perhotelan",
    TaxKind.PBJT_PARKIR: "PBJT Jasa Parkir",
    TaxKind.PBJT_KESENIAN_HIBURAN: "PBJT Jasa Kesenian dan Hiburan",
    TaxKind.PBJT_TENAGA_LISTRIK: "PBJT Tenaga Listrik",
    TaxKind.REKLAME: "Pajak Reklame",
    TaxKind.AIR_TANAH: "Pajak Air Tanah",
}

_FOOTER = (
    "Pesan ini dikirim otomatis oleh Pemerintah Kota Malang melalui aplikasi kota; "
    "mohon tidak membalas e-mail ini. Semua pemberitahuan juga tersedia di kotak masuk "
    "aplikasi kota."
)


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification: ``kind`` is a stable code, ``title`` doubles as the e-mail subject."""

    kind: str
    title: str
    body: str


def email_text(body: str) -> str:
    """The e-mail around a notice's body: a greeting and a footer, nothing personal."""
    return f"Yth. Warga Kota Malang,\n\n{body}\n\n-- \n{_FOOTER}\n"


def tanggal(day: date) -> str:
    """``2026-05-01`` -> ``1 Mei 2026``."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def rupiah(amount: int) -> str:
    """``1250000`` -> ``Rp1.250.000``."""
    return "Rp" + f"{amount:,}".replace(",", ".")


def permit_issued(event: PermitIssued | IssuedPermit) -> Notice:
    body = (
        f"{PERMITS[event.kind]} nomor {event.permit_no} (permohonan {event.application_no}) "
        f"telah terbit pada {tanggal(event.issued_on)}."
    )
    if event.valid_until is not None:
        body += f" Izin berlaku sampai {tanggal(event.valid_until)}."
    body += " Dokumen izin dapat diambil melalui layanan DPMPTSP Kota Malang."
    return Notice("permit-issued", "Izin Anda telah terbit", body)


def permit_rejected(event: PermitRejected) -> Notice:
    reason = REJECTIONS.get(event.reason, "lihat surat keputusan")
    body = (
        f"Permohonan {PERMITS[event.kind]} nomor {event.application_no} tidak dapat disetujui "
        f"(keputusan {tanggal(event.rejected_on)}). Alasan: {reason}. Rincian ada di surat "
        "keputusan DPMPTSP Kota Malang; Anda dapat mengajukan permohonan baru."
    )
    return Notice("permit-rejected", "Permohonan izin Anda ditolak", body)


def payment_received(event: PaymentReceived | Payment) -> Notice:
    paid_on = event.paid_at.astimezone(WIB).date()
    body = (
        f"Pembayaran {TAXES[event.tax_kind]} sebesar {rupiah(event.amount)} "
        f"(referensi {event.payment_ref}) telah diterima pada {tanggal(paid_on)}. Terima kasih "
        "telah membayar pajak daerah."
    )
    return Notice("payment-received", "Pembayaran pajak Anda telah diterima", body)
