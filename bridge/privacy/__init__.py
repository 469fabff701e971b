"""What the bridge says in public and in its logs: personal data (``pii``) and secrets
(``secrets``) kept out of both."""
