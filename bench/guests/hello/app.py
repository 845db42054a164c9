"""hello: prints one line; what bench/startup.py starts again and again."""

from wit_world import exports


class Run(exports.Run):
    def run(self) -> None:
        print("hello from a componentize-py guest", flush=True)
