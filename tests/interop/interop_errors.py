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


class ServiceException(Exception):
    """An OpenStack-style exception base, as nova.exception.NovaException is.

    The message is formatted from ``msg_fmt`` and the keyword arguments, which the
    exception keeps in ``kwargs`` (with its HTTP ``code``): oslo.messaging sends
    ``args`` (``[message]``) and those ``kwargs``, and the receiver rebuilds the exception
    as ``cls(message, **kwargs)``.
    """

    msg_fmt = "An unknown exception occurred."
    code = 500

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        if "code" not in self.kwargs:
            self.kwargs["code"] = self.code
        if not message:
            message = self.msg_fmt % kwargs
        super().__init__(message)


class InstanceNotFound(ServiceException):
    """nova.exception.InstanceNotFound, in short."""

    msg_fmt = "Instance %(instance_id)s could not be found."
    code = 404
