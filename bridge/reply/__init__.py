"""reply: every status change told to the citizen, approved, in order, once, within quota
(composing in ``role``, ``approval``, ``outbox``, ``templates``, the last gate ``public_text``)."""
