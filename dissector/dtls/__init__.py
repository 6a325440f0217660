"""Particle's DTLS 1.2 dialect: records, handshake, record protection, persisted sessions.

Pure and sans-IO: bytes in, dataclasses out. See :mod:`.records`, :mod:`.handshake`,
:mod:`.crypto`, :mod:`.keys` and :class:`.session.DtlsConnection` (the decrypting
connection tracker the capture pipeline feeds).
"""

from __future__ import annotations

from .crypto import (
    SUITES,
    CipherSuite,
    KeyBlock,
    RecordDecryptError,
    RecordProtection,
    derive_master,
    key_block,
    prf,
)
from .handshake import HandshakeError, HandshakeReassembler, parse_handshake_body
from .keys import (
    PersistedSession,
    SessionPersistError,
    looks_like_session_blob,
    parse_session_persist,
    parse_session_persist_text,
)
from .records import DatagramParse, DtlsRecord, parse_datagram
from .session import (
    Alert,
    ApplicationData,
    CachedSession,
    ChangeCipherSpec,
    DtlsConnection,
    DtlsEvent,
    HandshakeMessage,
    KeepAlive,
    SessionCache,
)

__all__ = [
    "SUITES",
    "Alert",
    "ApplicationData",
    "CachedSession",
    "ChangeCipherSpec",
    "CipherSuite",
    "DatagramParse",
    "DtlsConnection",
    "DtlsEvent",
    "DtlsRecord",
    "HandshakeError",
    "HandshakeMessage",
    "HandshakeReassembler",
    "KeepAlive",
    "KeyBlock",
    "PersistedSession",
    "RecordDecryptError",
    "RecordProtection",
    "SessionCache",
    "SessionPersistError",
    "derive_master",
    "key_block",
    "looks_like_session_blob",
    "parse_datagram",
    "parse_handshake_body",
    "parse_session_persist",
    "parse_session_persist_text",
    "prf",
]
