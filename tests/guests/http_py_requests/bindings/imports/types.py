from wit_world.imports.wasi_http_types import *  # noqa: F401,F403
