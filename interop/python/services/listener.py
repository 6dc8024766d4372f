"""The `listener` service (listener.yml): records the events it receives.

    on_uppercase   uppercase_transform_finished (what echo.upper emits), queue listener-on_uppercase
    on_interop     interop.# (any event type starting with "interop."), queue listener-on_interop

Each event is logged as a line `EVENT <type> <body>` and, when LYMPH_PEER_EVENTS names a
file (start.sh sets it), appended to it as one JSON object per line:
{"body": ..., "headers": {"trace_id": ...}, "source": <emitter's identity>, "type": ...}
"""
import json
import os

import lymph


def record(event):
    line = json.dumps({'type': event.evt_type, 'body': event.body, 'headers': event.headers,
                       'source': event.source}, sort_keys=True, default=str)
    print('EVENT %s %s' % (event.evt_type, json.dumps(event.body, sort_keys=True, default=str)), flush=True)
    path = os.environ.get('LYMPH_PEER_EVENTS')
    if path:
        with open(path, 'a') as f:
            f.write(line + '\n')


class Listener(lymph.Interface):

    @lymph.event('uppercase_transform_finished')
    def on_uppercase(self, event):
        record(event)

    @lymph.event('interop.#')
    def on_interop(self, event):
        record(event)
