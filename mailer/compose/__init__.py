"""What the comms team writes: newsletter issues (drafts, review, sending), progress updates, digests, and how
each becomes mail. Adapters (the admin, the API, the CLI) call commands.py, with inputs checked by inputs.py."""
