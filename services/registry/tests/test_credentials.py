"""Secret generation, hashing and constant-time matching."""

import hashlib

from capps_registry.oauth.credentials import (
    StoredSecret,
    hash_secret,
    looks_like_client_id,
    match_secret,
    new_client_id,
    new_secret,
)


def test_new_secrets_are_long_url_safe_and_stored_as_hashes() -> None:
    made = new_secret()
    assert len(made.value) >= 43
    assert all(char.isalnum() or char in "-_" for char in made.value)
    assert made.hash == hashlib.sha256(made.value.encode()).digest()
    assert made.hint == made.value[-4:]
    assert made.value.encode() not in made.hash
    assert new_secret().value != made.value


def test_match_finds_the_right_secret() -> None:
    stored = [StoredSecret("old", hash_secret("one")), StoredSecret("new", hash_secret("two"))]
    assert match_secret("two", stored) == "new"
    assert match_secret("one", stored) == "old"
    assert match_secret("three", stored) is None
    assert match_secret("two", []) is None


def test_client_ids_are_uuids() -> None:
    assert looks_like_client_id(new_client_id())
    assert looks_like_client_id("partner-siem.v2")  # an external provider's client id
    for junk in ("", "../x", "a b", "<script>", "-lead", "A" * 201):
        assert not looks_like_client_id(junk)
