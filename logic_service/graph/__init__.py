"""Calls from the logic tier to the graph tier (TF Serving's REST API).

- `target.py`: one servable as this process sees it: signature cache, breaker, batcher.
- `batcher.py`: concurrent requests for one target become one `:predict`.
- `breaker.py`: stop calling a graph that is failing; answer 503 at once.
- `overdue.py`: when a call still in flight counts as failing (far past the target's p99).
- `prober.py`: background threads: the watchdog that opens the breaker on an overdue call,
  the prober whose one call at a time closes it.
- `client.py`: the pooled client: timeouts, retries, errors mapped to 502/503/504.
- `address.py`: the graph tier's address checked (standard library only).
- `http_transport.py`: the hand-written HTTP/1.1 keep-alive connection under the client.
- `codecs.py`: TF Serving's predict request, response and metadata, as the logic tier reads them.
"""
