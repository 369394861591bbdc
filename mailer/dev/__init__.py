"""Parts that let `make run` work with no service installed: embedded Redis and a mail catcher."""
