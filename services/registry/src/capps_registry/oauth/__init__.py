"""OAuth 2.0 client credentials: client authentication, tokens, keys and metadata."""
