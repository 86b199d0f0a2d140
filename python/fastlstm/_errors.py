"""The exceptions fastlstm raises for misuse, beyond Python's own."""


class InputError(ValueError, RuntimeError):
    """An argument has the wrong shape, size or value; the message names it.

    A ValueError, and also a RuntimeError, which is what torch raises for the same misuse, so code
    written against torch.nn.LSTM catches it unchanged.
    """


class UnknownStreamError(KeyError):
    """A stream id that is not an open stream of the pool it was given to (never opened, or
    closed). ``args``: (the id, the message); ``id`` is the id."""

    @property
    def id(self) -> int:
        return int(self.args[0])

    def __str__(self) -> str:
        return str(self.args[1]) if len(self.args) > 1 else super().__str__()


class PoolFullError(RuntimeError):
    """``open()`` on a stream pool whose every slot holds an open stream."""


class BatcherClosedError(RuntimeError):
    """A step given to a closed StepBatcher, or pending when it closed without draining."""


class OnnxImportError(ValueError):
    """An ONNX graph that fastlstm cannot take as asked: no LSTM node, an unknown node, a weight
    that is missing or misshaped, or an attribute it does not run; the message names it."""
