"""The labour office's job-seeker registry: a PHP-era MySQL table of AK/I cards ("kartu kuning").

Written the way PHP applications of the 2000s wrote MySQL, and kept that way because the
application still runs on it:

* ``latin1`` tables (the MySQL default before 8.0);
* ``'0000-00-00'`` for a date not known yet instead of NULL (``NOT NULL DEFAULT '0000-00-00'``),
  which needs a ``sql_mode`` without ``NO_ZERO_DATE`` (:data:`SQL_MODE`): drivers return it as
  None (mysqlclient, binlog readers) or as the string ``'0000-00-00'`` (PyMySQL);
* ``TINYINT(1)`` flags (``sudah_bekerja``, ``is_hapus``: soft delete) that read back as 0/1;
* the card's serial as ``INT(6) UNSIGNED ZEROFILL``: the application prints ``000412``, the
  driver returns 412, so the card number is rebuilt from ``thn_daftar`` and the serial;
* Indonesian column names, free text (``keterampilan``) beside codes (``kode_jabatan``: KBJI
  codes separated by commas), the kecamatan as a name typed or picked by the operator;
* ``tgl_update``, a local-time (WIB) ``DATETIME`` with ``ON UPDATE CURRENT_TIMESTAMP``, as the
  only trace of a change, to the second. A DATETIME, not a TIMESTAMP: it reads the same through
  SQL and through the binlog (a TIMESTAMP is converted to the session's time zone in SQL and
  not in the binlog), and it is the row's version in event ids.
"""

from __future__ import annotations

SQL_MODE = "NO_ENGINE_SUBSTITUTION"
"""What the application's sessions run with: no strict mode, zero dates allowed (MySQL 5.x)."""

TABLE = "pencaker"

# Every column but the auto-increment id, in table order.
COLUMNS = (
    "thn_daftar",
    "no_pendaftaran",
    "nik",
    "nama",
    "tempat_lahir",
    "tgl_lahir",
    "jenis_kelamin",
    "alamat",
    "kecamatan",
    "pendidikan_terakhir",
    "jurusan",
    "kode_jabatan",
    "keterampilan",
    "tgl_daftar",
    "tgl_berlaku",
    "sudah_bekerja",
    "jenis_penempatan",
    "kode_jabatan_kerja",
    "tgl_penempatan",
    "is_hapus",
    "petugas",
    "tgl_update",
)

DDL = """
CREATE TABLE `pencaker` (
  `id_pencaker` int(11) NOT NULL AUTO_INCREMENT,
  `thn_daftar` year(4) NOT NULL DEFAULT '0000',
  `no_pendaftaran` int(6) unsigned zerofill NOT NULL DEFAULT '000000',
  `nik` varchar(16) NOT NULL DEFAULT '',
  `nama` varchar(100) NOT NULL DEFAULT '',
  `tempat_lahir` varchar(50) NOT NULL DEFAULT '',
  `tgl_lahir` date NOT NULL DEFAULT '0000-00-00',
  `jenis_kelamin` enum('L','P') NOT NULL DEFAULT 'L',
  `alamat` varchar(255) NOT NULL DEFAULT '',
  `kecamatan` varchar(30) NOT NULL DEFAULT '',
  `pendidikan_terakhir` varchar(20) NOT NULL DEFAULT '',
  `jurusan` varchar(100) DEFAULT NULL,
  `kode_jabatan` varchar(50) NOT NULL DEFAULT '',
  `keterampilan` text,
  `tgl_daftar` date NOT NULL DEFAULT '0000-00-00',
  `tgl_berlaku` date NOT NULL DEFAULT '0000-00-00',
  `sudah_bekerja` tinyint(1) NOT NULL DEFAULT '0',
  `jenis_penempatan` varchar(4) NOT NULL DEFAULT '',
  `kode_jabatan_kerja` varchar(4) NOT NULL DEFAULT '',
  `tgl_penempatan` date NOT NULL DEFAULT '0000-00-00',
  `is_hapus` tinyint(1) NOT NULL DEFAULT '0',
  `petugas` varchar(30) NOT NULL DEFAULT '',
  `tgl_update` datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`id_pencaker`),
  UNIQUE KEY `kartu` (`thn_daftar`,`no_pendaftaran`),
  KEY `perubahan` (`tgl_update`,`id_pencaker`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1
"""
"""The table (converted from MyISAM to InnoDB at some point, as most were: row-based binlog
and transactions need nothing else from it)."""


def insert_sql() -> str:
    """One parameterised INSERT (PyMySQL ``%s`` marks) of a row in :data:`COLUMNS` order."""
    names = ", ".join(f"`{c}`" for c in COLUMNS)
    return f"INSERT INTO `{TABLE}` ({names}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
