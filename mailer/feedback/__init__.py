"""The feedback loop: what happened to a message after it left, and what we do about it.

- `verp`: the envelope sender (Return-Path) each message carries, naming its delivery row, and reading it back.
- `commands.record`: one report about one recipient (a bounce or a complaint, from any source) → an event,
  the ledger row corrected, the person suppressed when the policy says so, the send checked for auto-pause.
- `policy`: the rules (hard bounce: at once; soft: N in M days; complaint: at once) and auto-pause.
- `reports.read`: a report that came back by mail (a DSN, an ARF complaint, a server's own words) → `Report`s.
- `receiver`: the bounce domain's SMTP server (`mailer bounces receive`); `mailbox`: polling a mailbox over IMAP
  (`mailer bounces poll`, and beat's task when BOUNCE_IMAP_URL is set).
"""
