"""The exception raised for malformed inputs."""


class InputError(ValueError, RuntimeError):
    """An argument has the wrong shape, size or value; the message names it.

    A ValueError, and also a RuntimeError, which is what torch raises for the same misuse, so code
    written against torch.nn.LSTM catches it unchanged.
    """
