"""TF Serving's REST API: `/v1/models/NAME[/versions/N|/labels/L][:predict|:classify|:regress]`.

- `app.py`: the WSGI app (routing, errors, metrics); `handlers.py`: one method per API call;
  `request_body.py`: reading a body within its limit; `example_codec.py`: `tf.Example` JSON
  for classify and regress. The predict JSON codec is `tfs_protocol.json_codec`.
"""
