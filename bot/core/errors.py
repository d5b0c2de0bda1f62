"""Errors a user caused. They become a short ephemeral reply, never a stack trace."""


class UsageError(Exception):
    """The request cannot be carried out as typed; the message tells the user what to do."""

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage

    def reply_text(self) -> str:
        if self.usage:
            return f"{self.message}\nUsage: `{self.usage}`"
        return self.message
