"""Key material: the explicit :class:`KeyRing`, key file recognition, key logs, dumps.

``from dissector.keys import KeyRing, KeyFileError, KeyLogWriter``.
"""

from __future__ import annotations

from dissector.keys.dump import (
    CORE_DEVICE_KEY_LEN,
    CORE_DEVICE_KEY_OFFSET,
    CORE_SERVER_KEY_LEN,
    CORE_SERVER_KEY_OFFSET,
    DCT_DEVICE_EC_KEY_LEN,
    DCT_DEVICE_EC_KEY_OFFSET,
    DCT_DEVICE_RSA_KEY_LEN,
    DCT_DEVICE_RSA_KEY_OFFSET,
    DCT_TCP_SERVER_KEY_LEN,
    DCT_TCP_SERVER_KEY_OFFSET,
    DCT_UDP_SERVER_KEY_LEN,
    DCT_UDP_SERVER_KEY_OFFSET,
    extract_keys_from_dump,
)
from dissector.keys.errors import KeyFileError
from dissector.keys.keylog import KeyLogParse, KeyLogWriter, parse_keylog
from dissector.keys.ring import KeyEntry, KeyRing, LoadProblem, SkippedFile, fingerprint
from dissector.keys.serverfile import (
    DEFAULT_TCP_PORT,
    DEFAULT_UDP_PORT,
    ServerAddress,
    ServerKeyFile,
    der_total_length,
    parse_address_block,
    parse_server_key_file,
)
from dissector.keys.sniff import normalise_device_id

__all__ = [
    "CORE_DEVICE_KEY_LEN",
    "CORE_DEVICE_KEY_OFFSET",
    "CORE_SERVER_KEY_LEN",
    "CORE_SERVER_KEY_OFFSET",
    "DCT_DEVICE_EC_KEY_LEN",
    "DCT_DEVICE_EC_KEY_OFFSET",
    "DCT_DEVICE_RSA_KEY_LEN",
    "DCT_DEVICE_RSA_KEY_OFFSET",
    "DCT_TCP_SERVER_KEY_LEN",
    "DCT_TCP_SERVER_KEY_OFFSET",
    "DCT_UDP_SERVER_KEY_LEN",
    "DCT_UDP_SERVER_KEY_OFFSET",
    "DEFAULT_TCP_PORT",
    "DEFAULT_UDP_PORT",
    "KeyEntry",
    "KeyFileError",
    "KeyLogParse",
    "KeyLogWriter",
    "KeyRing",
    "LoadProblem",
    "ServerAddress",
    "ServerKeyFile",
    "SkippedFile",
    "der_total_length",
    "extract_keys_from_dump",
    "fingerprint",
    "normalise_device_id",
    "parse_address_block",
    "parse_keylog",
    "parse_server_key_file",
]
