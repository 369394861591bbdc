"""What the comms team writes: newsletter issues (drafts, sending) and how they become mail."""
