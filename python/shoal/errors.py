"""Errors raised by the Shoal client."""


class ShoalError(Exception):
    """A request Shoal refused or that no data node answered in time."""


class ErrorCodeInfo:
    """What ``MultithreadedTableWriter.insert`` returns, as dolphindb's: ``errorCode`` is ""
    when all is well (else "A1" …, see below), ``errorInfo`` says what went wrong.

    Codes used here: "A1" the writer has stopped (after an error or
    ``waitForThreadCompletion``), "A2" a row with the wrong number of columns, "A5" an append
    the cluster refused or did not answer, "A4" values that do not fit the table's columns."""

    def __init__(self, errorCode: str = "", errorInfo: str = "") -> None:
        self.errorCode = errorCode
        self.errorInfo = errorInfo

    def hasError(self) -> bool:
        return self.errorCode != ""

    def succeed(self) -> bool:
        return self.errorCode == ""

    def __repr__(self) -> str:
        return f"errorCode: {self.errorCode}\n errorInfo: {self.errorInfo}\n"
