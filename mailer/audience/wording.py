"""The sign-up wording, versioned: every consent record names the version the person was shown.

Change the text → add a new version and point CURRENT at it; never edit a version already used.
"""

WORDING = {
    "2026-11-v1": (
        "We will email you the updates you choose. You can change what you get or unsubscribe at any time "
        "using the link in every email. We keep your email address and choices only to send you these "
        "updates, and never share them."
    ),
}
CURRENT = "2026-11-v1"
