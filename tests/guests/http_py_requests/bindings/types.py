from componentize_py_types import Err, Ok  # noqa: F401
