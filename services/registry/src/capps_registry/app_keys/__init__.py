"""The public keys an app registers to authenticate with signed assertions (private_key_jwt)."""
