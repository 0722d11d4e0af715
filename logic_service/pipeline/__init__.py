"""What a pipeline is, from the files it names to the features of one request.

- `artifacts.py`: load pickles, joblib and .skops files strictly, with their pins and versions.
- `contract.py`: the request contract read from the fitted state (columns, categories, nulls).
- `validation.py`: the checks a request passes, in one pass, into the prepared request.
- `assembled.py`: `assemble:`, separately fitted transformers side by side as one.
- `compiled.py`, `onnx_converters.py`: transformers and models as ONNX run by onnxruntime.
- `parity.py`: the gate a compiled pipeline passes before it serves.
- `runtime.py`: `Pipeline`, the loaded pipeline a request runs through.
- `loader.py`: builds the pipelines at start-up (load, contract, compile, parity, engine).
"""
