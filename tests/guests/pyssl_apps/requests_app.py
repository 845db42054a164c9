"""requests, unchanged. Usage: requests_app.py URL ACTION...
  session          two GETs on one requests.Session (keep-alive), default verification
  verify=PATH      requests.get(verify=PATH)
  cert=SPEC        requests.get(cert=SPEC), e.g. host-identity:NAME
"""

import sys

import requests


def main():
    url, *actions = sys.argv[1:]
    for action in actions:
        kind, _, value = action.partition("=")
        try:
            if kind == "session":
                with requests.Session() as session:
                    for path in ("/one", "/two"):
                        r = session.get(url + path)
                        print(f"session: status={r.status_code} body={r.text}")
            elif kind == "verify":
                r = requests.get(url + "/verify", verify=value)
                print(f"verify: status={r.status_code} body={r.text}")
            elif kind == "cert":
                r = requests.get(url + "/cert", cert=value)
                print(f"cert: status={r.status_code} body={r.text}")
        except requests.exceptions.SSLError as e:
            print(f"{kind}: SSLError {e}")


if __name__ == "__main__":
    main()
