from wit_world.imports.outgoing_handler import *  # noqa: F401,F403
