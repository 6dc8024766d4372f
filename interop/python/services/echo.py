"""The `echo` service (echo.yml): lymph's talk example, plus an echo and a failure.

    echo.upper(text)    returns text.upper() and emits uppercase_transform_finished {"text": text}
    echo.echo(text)     returns text as it came (any msgpack value)
    echo.fail(message)  raises ValueError(message): the caller gets an ERROR reply
                        {"type": "ValueError", "message": message}
"""
import lymph


class Echo(lymph.Interface):

    @lymph.rpc()
    def upper(self, text):
        self.emit('uppercase_transform_finished', {'text': text})
        return text.upper()

    @lymph.rpc()
    def echo(self, text):
        return text

    @lymph.rpc(raises=(ValueError,))
    def fail(self, message):
        raise ValueError(message)
