"""A Python lymph 0.15 client that keeps calling `echo.echo` for a while, idle between calls.

Usage: python long_client.py CONFIG SECONDS PAUSE

Each pause is longer than lymph's 3 s liveness timeout, so the calls after the first succeed only
if the serving instance answered the client's `lymph.ping` heartbeats in between. Prints one line
per call (`ok <n> <endpoint>`) and exits 1 at the first failure.
"""
import lymph.monkey

lymph.monkey.patch()

import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from lymph.client import Client  # noqa: E402
from lymph.config import Configuration  # noqa: E402


def main():
    config_file, seconds, pause = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    config = Configuration({'container': {}})
    config.load_file(config_file)
    config.setdefault('container.ip', '127.0.0.1')
    client = Client.from_config(config)
    deadline = time.time() + seconds
    n = 0
    while True:
        text = 'call-%d' % n
        try:
            reply = client.request('echo', 'echo.echo', {'text': text}, timeout=2)
        except Exception as e:  # any failure ends the test
            print('failed %d %s: %r' % (n, type(e).__name__, e), flush=True)
            return 1
        if reply.body != text:
            print('failed %d: wrong reply %r' % (n, reply.body), flush=True)
            return 1
        print('ok %d %s' % (n, reply.source), flush=True)
        n += 1
        if time.time() >= deadline:
            return 0
        gevent.sleep(pause)


if __name__ == '__main__':
    sys.exit(main())
