class SharedMemoryException(Exception):
    """Exception type for shared memory related error.

    Raised for every failure of tritonshm: the message names the key, the sizes
    or offset involved and, for OS failures, the OS error. ``errno`` holds the
    OS error number, or 0 when the failure is not an OS error.
    """

    errno: int = 0
