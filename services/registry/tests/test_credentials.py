"""Secret format, keyed digests and constant-time matching."""

import hashlib
import hmac

from capps_registry.oauth.credentials import (
    SECRET_LENGTH,
    SECRET_PREFIX,
    StoredSecret,
    format_secret,
    looks_like_client_id,
    looks_like_secret,
    match_secret,
    new_client_id,
    new_secret,
    rekey_legacy_digest,
    secret_digest,
)

PEPPER = b"pepper-one"


def test_secrets_have_the_scannable_format() -> None:
    made = new_secret(PEPPER)
    assert made.value.startswith(SECRET_PREFIX)
    assert len(made.value) == SECRET_LENGTH
    assert made.value[len(SECRET_PREFIX) :].isalnum()
    assert looks_like_secret(made.value)
    assert made.hint == made.value[-4:]
    assert new_secret(PEPPER).value != made.value


def test_the_body_holds_256_bits_and_the_checksum_catches_a_typo() -> None:
    # The largest and smallest 256-bit values both fit the fixed-width body.
    for raw in (b"\xff" * 32, b"\x00" * 32):
        value = format_secret(raw)
        assert len(value) == SECRET_LENGTH
        assert looks_like_secret(value)
    value = new_secret(PEPPER).value
    position = len(SECRET_PREFIX) + 5
    typo = value[:position] + ("A" if value[position] != "A" else "B") + value[position + 1 :]
    assert not looks_like_secret(typo)
    assert not looks_like_secret("ghp_" + value[len(SECRET_PREFIX) :])
    assert not looks_like_secret(value[:-1])


def test_the_stored_digest_is_keyed_by_the_pepper() -> None:
    made = new_secret(PEPPER)
    plain = hashlib.sha256(made.value.encode()).digest()
    assert made.hash == hmac.new(PEPPER, plain, hashlib.sha256).digest()
    assert made.hash != plain
    assert secret_digest(b"another pepper", made.value) != made.hash
    # A row stored before keying (plain SHA-256) re-keys to exactly what is now computed.
    assert rekey_legacy_digest(PEPPER, plain) == secret_digest(PEPPER, made.value)


def test_match_finds_the_right_secret_and_only_with_the_right_pepper() -> None:
    one, two = new_secret(PEPPER), new_secret(PEPPER)
    stored = [StoredSecret("old", one.hash), StoredSecret("new", two.hash)]
    assert match_secret(PEPPER, two.value, stored) == "new"
    assert match_secret(PEPPER, one.value, stored) == "old"
    assert match_secret(PEPPER, new_secret(PEPPER).value, stored) is None
    assert match_secret(b"wrong pepper", two.value, stored) is None
    assert match_secret(PEPPER, two.value, []) is None
    assert match_secret(PEPPER, two.value, stored[:1]) is None


def test_client_ids_are_uuids() -> None:
    assert looks_like_client_id(new_client_id())
    assert looks_like_client_id("partner-siem.v2")  # an external provider's client id
    for junk in ("", "../x", "a b", "<script>", "-lead", "A" * 201):
        assert not looks_like_client_id(junk)
