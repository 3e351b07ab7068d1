"""The training loops' shared failure type (its own module, so every loop can raise it without
importing another loop)."""


class NonFiniteLoss(FloatingPointError):
    """Raised when a training or unlearning loss becomes NaN or infinite."""
