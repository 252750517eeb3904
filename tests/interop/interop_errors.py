"""Application exceptions shared by the interop peers (tests/interop/peer.py).

The module is in the peer's allowed_remote_exmods, so a failure whose "module" is
"interop_errors" is rebuilt on the Python side as the class below (renamed
"<Class>_Remote" in module "interop_errors_Remote" by oslo.messaging).
"""


class CustomError(Exception):
    """An application error with an extra field.

    oslo.messaging serializes ``args`` (here ``[message]``) and, because the attribute
    exists, ``kwargs`` (here ``{"code": code}``); the receiver rebuilds the exception as
    ``CustomError(*args, **kwargs)``.
    """

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code
        self.kwargs = {"code": code}
