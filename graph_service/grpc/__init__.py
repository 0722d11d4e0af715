"""TF Serving's gRPC API (tensorflow-serving-api's PredictionService and ModelService).

- `server.py`: the servicers over the shared registry, pools and metrics.
- `codec.py`: TensorProto and request messages to and from numpy.
- `errors.py`: our errors as gRPC status codes, with TF Serving's texts.
"""
