"""The domain: what a target is, what a check found, when to alert. No I/O here."""
