"""Calls from the logic tier to the graph tier (TF Serving's REST API).

- `target.py`: one servable as this process sees it: signature cache, breaker, batcher.
- `batcher.py`: concurrent requests for one target become one `:predict`.
- `breaker.py`: stop calling a graph that is failing; answer 503 at once.
- `client.py`: the pooled client: timeouts, retries, errors mapped to 502/503/504.
- `http_transport.py`: the hand-written HTTP/1.1 keep-alive connection under the client.
- `codecs.py`: TF Serving's predict request, response and metadata, as the logic tier reads them.
"""
