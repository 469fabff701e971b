"""Keys and signatures: the keyring, and the HMAC every message on the bus carries."""
