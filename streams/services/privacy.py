"""Crypto-shredding of customers' personal data: the adapter the domain never sees.

A customer's personal data (name, email, phone, address) is written to Kafka only as one AES-256-GCM
blob, sealed with a key of that customer alone. The keys live in the `customer_to_key` table, whose
changelog is the compacted topic `bank.customer-keys` (key: customer id; value: the 32 raw key bytes).
`ForgetCustomer` deletes the key: a tombstone on that topic. From then on every copy of the blob, in
every topic and changelog, is noise; balances and transfers, which hold no personal data, stay intact.

Email uniqueness works on a keyed hash (HMAC-SHA256 of the normalised email with
`BANK_EMAIL_HASH_KEY`): the email registry and `bank.customer-emails` are keyed by it, never by the
email itself.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass, replace
from typing import MutableMapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..domain import customers
from ..domain.base import Command

log = logging.getLogger(__name__)

#: Shown instead of a forgotten customer's name and email (phone and address become null).
REDACTED = "[forgotten]"
#: The development default of BANK_EMAIL_HASH_KEY; set a secret of your own in production.
DEV_EMAIL_HASH_KEY = "streambank-dev-email-hash-key"

_BLOB_VERSION = b"\x01"
_NONCE_SIZE = 12
KEY_SIZE = 32


@dataclass(frozen=True, slots=True)
class PersonalData:
    """The plaintext the sealed blob holds; never written to Kafka as such by the workers."""

    first_name: str
    last_name: str
    email: str
    phone: str | None = None
    address: str | None = None


REDACTED_DATA = PersonalData(first_name=REDACTED, last_name=REDACTED, email=REDACTED, phone=None, address=None)


def email_hash(secret: bytes, email: str) -> str:
    """The keyed hash the registry uses for `email`: equal for emails equal once normalised."""
    return hmac.new(secret, customers.normalize_email(email).encode("utf-8"), hashlib.sha256).hexdigest()


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_SIZE * 8)


def _aad(key_id: str) -> bytes:
    # Binds the blob to its customer: a blob copied onto another customer does not open.
    return b"streambank.customer:" + key_id.encode("utf-8")


def seal(key: bytes, key_id: str, data: PersonalData) -> bytes:
    """version byte, 12-byte random nonce, AES-GCM ciphertext with its tag."""
    plaintext = json.dumps({"first_name": data.first_name, "last_name": data.last_name, "email": data.email,
                            "phone": data.phone, "address": data.address}, separators=(",", ":")).encode()
    nonce = os.urandom(_NONCE_SIZE)
    return _BLOB_VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(key_id))


def unseal(key: bytes | None, key_id: str, blob: bytes) -> PersonalData:
    """The personal data in `blob`; the redacted form when the key is gone (forgotten) or does not fit."""
    if key is None or len(blob) <= 1 + _NONCE_SIZE or blob[:1] != _BLOB_VERSION:
        return REDACTED_DATA
    nonce, ciphertext = blob[1:1 + _NONCE_SIZE], blob[1 + _NONCE_SIZE:]
    try:
        plain = json.loads(AESGCM(key).decrypt(nonce, ciphertext, _aad(key_id)))
    except (InvalidTag, ValueError):
        return REDACTED_DATA
    return PersonalData(first_name=plain["first_name"], last_name=plain["last_name"], email=plain["email"],
                        phone=plain.get("phone"), address=plain.get("address"))


def personal_data_of(record, key: bytes | None) -> PersonalData:
    """A customer record's (event, state or view) personal data, whether sealed or written before sealing.

    Forgotten customers and sealed blobs without their key read as the redacted form."""
    if getattr(record, "forgotten", False):
        return REDACTED_DATA
    if record.personal_data:
        return unseal(key, record.key_id, record.personal_data)
    return PersonalData(first_name=record.first_name, last_name=record.last_name, email=record.email,
                        phone=record.phone, address=record.address)


class KeyStore:
    """Per-customer keys over a mapping: the `customer_to_key` Faust table in a worker, a dict in tests.

    Deleting an entry of the Faust table writes the tombstone to `bank.customer-keys`.
    """

    def __init__(self, keys: MutableMapping, email_secret: bytes):
        self.keys = keys
        self.email_secret = email_secret

    def key_of(self, customer_id: str) -> bytes | None:
        return self.keys.get(customer_id)

    def prepare(self, state, command: Command, waiting: tuple = (), redelivered: bool = False) -> Command:
        """What the customer processor hands the domain: see `seal_command`; and a refused email
        reservation deletes the key made for the customer that will now never exist.

        `waiting`: the steps the customer still waits on besides the one this reply answers. Two
        CreateCustomer for one new customer are sealed with one key (the second finds the first's);
        while another reservation is waited on, the customer may still come to exist with that key.

        The key is written again with every record that carries a blob sealed with it (the sealed
        reservation, the accepted reply that makes CustomerCreated), also on a redelivery: the local
        store may hold a key whose changelog record was lost with an attempt that never committed (a
        crash before the changelog got it, an aborted transaction: RocksDB keeps what it was given). Then
        the blob would be visible on Kafka while its key is not, and the customer would read as forgotten
        on every other worker.
        """
        if redelivered:
            if isinstance(command, customers.CreateCustomer) or (
                    isinstance(command, customers.RecordEmailReservation) and command.accepted):
                self._restate(command.customer_id)
            return command
        if (isinstance(command, customers.RecordEmailReservation) and not command.accepted and state is None
                and not waiting and command.customer_id in self.keys):
            del self.keys[command.customer_id]
        if isinstance(command, customers.RecordEmailReservation) and command.accepted and state is None:
            self._restate(command.customer_id)
        if isinstance(command, customers.CreateCustomer) and (command.personal_data or command.email_hash
                                                               or command.key_id):
            # Only this adapter seals: sealed fields from a producer are dropped, the plaintext is what counts.
            command = replace(command, personal_data=b"", email_hash="", key_id="")
        return self.seal_command(state, command)

    def seal_command(self, state, command: Command) -> Command:
        """A plaintext `CreateCustomer` for a new customer → the same command with its personal data
        sealed under a key made for that customer, and the email replaced by its keyed hash.

        Anything else, an invalid command (the domain rejects it, naming only the field) and a command
        for an existing customer (rejected as ALREADY_EXISTS; no key is made) pass unchanged.
        """
        if (not isinstance(command, customers.CreateCustomer) or command.personal_data or state is not None
                or customers.validate(command) is not None):
            return command
        key = self.keys.get(command.customer_id) or new_key()
        self.keys[command.customer_id] = key  # also when found: see `prepare`
        data = PersonalData(first_name=command.first_name, last_name=command.last_name,
                            email=customers.normalize_email(command.email), phone=command.phone or None,
                            address=command.address or None)
        return replace(command, first_name="", last_name="", email="", phone=None, address=None,
                       email_hash=email_hash(self.email_secret, command.email), key_id=command.customer_id,
                       personal_data=seal(key, command.customer_id, data))

    def _restate(self, customer_id: str) -> None:
        key = self.keys.get(customer_id)
        if key is not None:
            self.keys[customer_id] = key

    def shred(self, events) -> None:
        """After `CustomerForgotten`: delete the customer's key (again, on a redelivery)."""
        for event in events:
            if isinstance(event, customers.CustomerForgotten) and event.aggregate_id in self.keys:
                del self.keys[event.aggregate_id]


