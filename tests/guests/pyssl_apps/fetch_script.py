"""A plain script (no main, no Run): `wasitls build` runs its body as __main__."""

import sys
import urllib.request

if __name__ == "__main__":
    with urllib.request.urlopen(sys.argv[1]) as response:
        print(f"status={response.status}")
        print(f"body={response.read().decode()}")
    if len(sys.argv) > 2:
        sys.exit(int(sys.argv[2]))
